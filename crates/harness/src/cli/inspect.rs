//! `eqaug inspect`: a group's order and the dimensions of its equivariant layer spaces.

use eqaug_groups::{Group, Projector, Rep};

/// Arguments of `eqaug inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The group: perm (S_n on the adjacency entries of graphs), sym (S_n on n points),
    /// trans2d, trans1d, rot, rototrans, swap, trivial.
    #[arg(long, value_parser = ["perm", "sym", "trans2d", "trans1d", "rot", "rototrans", "swap", "trivial"],
          required_unless_present = "kernel")]
    pub group: Option<String>,
    /// Instead of a group: the C_4 G-set of the 9 offsets of a 3 x 3 kernel (E5), its orbits
    /// and dim(E ∩ L_Omega) for the kernel support Omega.
    #[arg(long, value_parser = ["cross", "skew", "full"], conflicts_with = "group")]
    pub kernel: Option<String>,
    /// Grid side, node or point count (default: 10 for perm and sym, 2 for swap, 14
    /// otherwise).
    #[arg(long)]
    pub size: Option<usize>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Refuse when the estimated memory exceeds this (e.g. `8G`); default: the memory
    /// available now (MemAvailable in /proc/meminfo).
    #[arg(long, value_name = "SIZE", value_parser = eqaug_harness::memory::parse_size)]
    pub max_memory: Option<u64>,
}

/// Runs `eqaug inspect`.
pub fn run(args: Args) -> super::CliResult {
    if let Some(k) = &args.kernel {
        use eqaug_nn::conv::{describe_kernel_gset, Support};
        let support = match k.as_str() {
            "cross" => Support::Cross,
            "skew" => Support::Skew,
            _ => Support::Full,
        };
        let g = describe_kernel_gset(&support)?;
        if args.json {
            println!("{}", serde_json::to_string(&g)?);
        } else {
            print!("{g}");
        }
        return Ok(());
    }
    let group_name = args.group.clone().unwrap_or_default();
    let size = args.size.unwrap_or(match group_name.as_str() {
        "perm" | "sym" => 10,
        "swap" => 2,
        _ => 14,
    });
    // The orbit maps grow as size^4: estimate before building them.
    eqaug_harness::memory::estimate_inspect(&group_name, size)?
        .check(eqaug_harness::memory::limit(args.max_memory))?;
    let group = Group::builtin(&group_name, size)?;
    let rr = Projector::between(&group, Rep::base(1), Rep::base(1))?;
    let rt = Projector::between(&group, Rep::base(1), Rep::trivial(1))?;
    let points = group.degree();
    if args.json {
        let v = serde_json::json!({
            "group": group.name(),
            "size": size,
            "order": order_json(group.order()),
            "points": points,
            "dim_equivariant": rr.dim_per_channel_pair(),
            "dim_invariant": rt.dim_per_channel_pair(),
            "weights_equivariant": points * points,
            "weights_invariant": points,
        });
        println!("{v}");
    } else {
        println!("group            {}", group.name());
        println!("size n           {size}");
        println!("order |G|        {}", group.order());
        println!("points           {points}");
        println!(
            "dim E, rho -> rho       {} per channel pair (of {} weights)",
            rr.dim_per_channel_pair(),
            points * points
        );
        println!(
            "dim E, rho -> trivial   {} per channel pair (of {} weights)",
            rt.dim_per_channel_pair(),
            points
        );
    }
    Ok(())
}

/// The order as a JSON number when it fits in u64 (every built-in up to S_20), else a string.
fn order_json(order: u128) -> serde_json::Value {
    u64::try_from(order)
        .map(serde_json::Value::from)
        .unwrap_or_else(|_| serde_json::Value::from(order.to_string()))
}
