//! `eqaug inspect`: a group's order and the dimensions of its equivariant layer spaces.

use eqaug_groups::{Group, Projector, Rep};

/// Arguments of `eqaug inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The group: perm (S_n on graphs), trans2d, trans1d, rot, rototrans, swap, trivial.
    #[arg(long, value_parser = ["perm", "trans2d", "trans1d", "rot", "rototrans", "swap", "trivial"])]
    pub group: String,
    /// Grid side or node count (default: 10 for perm, 2 for swap, 14 otherwise).
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
    let size = args.size.unwrap_or(match args.group.as_str() {
        "perm" => 10,
        "swap" => 2,
        _ => 14,
    });
    // The orbit maps grow as size^4: estimate before building them.
    eqaug_harness::memory::estimate_inspect(&args.group, size)?
        .check(eqaug_harness::memory::limit(args.max_memory))?;
    let group = Group::builtin(&args.group, size)?;
    let rr = Projector::new(&group, Rep::base(1), Rep::base(1))?;
    let rt = Projector::new(&group, Rep::trivial(1), Rep::base(1))?;
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
