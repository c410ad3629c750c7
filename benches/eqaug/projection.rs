//! Projection onto E at paper sizes: a 32 x 32 channel layer on a 14 x 14 grid for every image
//! group, and on 10-node graphs for perm; against the brute-force Reynolds average where the
//! group is small enough. Throughput is in bytes of f32 weights projected.

use criterion::{BenchmarkId, Criterion, Throughput};
use eqaug::groups::{reynolds_average, Group, Projector, Rep};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

pub fn bench(c: &mut Criterion) {
    if !crate::common::selected("projection/") {
        return;
    }
    let mut group = c.benchmark_group("projection");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(1));
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for (name, n) in [
        ("trans2d", 14),
        ("trans1d", 14),
        ("rot", 14),
        ("rototrans", 14),
        ("perm", 10),
    ] {
        let g = Group::builtin(name, n).unwrap();
        for (label, out) in [("rho->rho", Rep::base(32)), ("rho->triv", Rep::trivial(32))] {
            let p = Projector::between(&g, Rep::base(32), out).unwrap();
            let w: Vec<f32> = (0..p.len()).map(|_| rng.gen_range(-1.0..1.0)).collect();
            group.throughput(Throughput::Bytes((p.len() * 4) as u64));
            let id = format!("{name}{n}/{label}");
            let mut buf = w.clone();
            group.bench_function(BenchmarkId::new("orbit-mean", &id), |b| {
                b.iter(|| {
                    buf.copy_from_slice(&w);
                    p.project_in_place(&mut buf).unwrap();
                })
            });
            group.bench_function(BenchmarkId::new("distance", &id), |b| {
                b.iter(|| p.distance_to_equivariant(&w))
            });
            // The brute-force Reynolds average costs |G| passes: only for small groups, and on
            // a 4 x 4 channel slice of the layer to keep the bench short.
            if g.order() <= 196 {
                let small =
                    Projector::between(&g, Rep::base(4), Rep { channels: 4, ..out }).unwrap();
                let ws: Vec<f32> = (0..small.len()).map(|_| rng.gen_range(-1.0..1.0)).collect();
                group.throughput(Throughput::Bytes((small.len() * 4) as u64));
                group.bench_function(BenchmarkId::new("brute-force-4x4ch", &id), |b| {
                    b.iter(|| reynolds_average(&g, &small, &ws).unwrap())
                });
                let mut sb = ws.clone();
                group.bench_function(BenchmarkId::new("orbit-mean-4x4ch", &id), |b| {
                    b.iter(|| {
                        sb.copy_from_slice(&ws);
                        small.project_in_place(&mut sb).unwrap();
                    })
                });
            }
        }
    }
    group.finish();
}
