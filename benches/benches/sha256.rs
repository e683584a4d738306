//! Criterion: throughput of the streaming SHA-256 hasher over 1 GiB.
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]

use cargohold_image_core::{Algorithm, Hasher};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const GIB: usize = 1 << 30;
const CHUNK: usize = 1 << 20;

fn bench(c: &mut Criterion) {
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
    let mut g = c.benchmark_group("sha256");
    g.throughput(Throughput::Bytes(GIB as u64));
    g.sample_size(10);
    g.bench_function("streaming 1 GiB in 1 MiB chunks", |b| {
        b.iter(|| {
            let mut h = Hasher::new(Algorithm::Sha256);
            for _ in 0..GIB / CHUNK {
                h.update(&chunk);
            }
            h.finish()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
