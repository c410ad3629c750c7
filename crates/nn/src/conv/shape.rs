//! The shape of a 3 x 3 convolution layer.

/// The shape of a 3 x 3 convolution layer on `h x w` maps: `c_in` channels in, `c_out` out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvShape {
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Map height.
    pub h: usize,
    /// Map width.
    pub w: usize,
}

impl ConvShape {
    /// Width of an input row: `c_in * h * w`.
    pub fn input_width(&self) -> usize {
        self.c_in * self.h * self.w
    }
    /// Width of an output row: `c_out * h * w`.
    pub fn output_width(&self) -> usize {
        self.c_out * self.h * self.w
    }
    /// Entries of the kernel tensor `[c_out, c_in, 9]`.
    pub fn kernel_len(&self) -> usize {
        self.c_out * self.c_in * 9
    }
    /// Floating-point operations (2 x multiply-adds) of one sample's forward pass.
    pub fn flops_per_sample(&self) -> usize {
        2 * self.c_out * self.c_in * 9 * self.h * self.w
    }
}
