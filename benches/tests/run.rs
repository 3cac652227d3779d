//! End-to-end checks of `ringkv-bench run` in-process: short runs against 1- and 3-node
//! ringkv clusters, and against redis-server and etcd when they are installed (otherwise
//! the test says what is missing). They check the bookkeeping, not the speed: every
//! recorded op is in a histogram, nothing failed, and the JSON carries every field.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ringkv_bench::process::find_program;
use ringkv_bench::{Distribution, Limit, Report, RunConfig, TargetKind, Workload};

fn config(targets: Vec<TargetKind>, nodes: usize, workload: Workload) -> RunConfig {
    RunConfig {
        workload,
        distribution: Distribution::Zipfian,
        records: 200,
        value_bytes: 32,
        concurrency: 4,
        limit: Limit::Duration(Duration::from_secs(1)),
        warmup: Duration::from_millis(200),
        targets,
        rounds: 1,
        nodes,
        fsync: false,
        seed: 42,
        data_root: std::env::temp_dir(),
    }
}

/// Checks one report: every target measured, no errors, histograms match the op counts,
/// and the JSON has the fields tools read.
fn check(report: &Report, targets: &[TargetKind], workload: Workload) {
    assert!(report.skipped.is_empty(), "skipped: {:?}", report.skipped);
    let measured: Vec<TargetKind> = report.results.iter().map(|r| r.target).collect();
    assert_eq!(measured, targets);
    for result in &report.results {
        let name = result.target.name();
        assert!(result.all.ops > 0, "{name}: no operations");
        assert_eq!(result.all.errors, 0, "{name}: errors {:?}", result.error_examples);
        assert!(result.error_examples.is_empty());
        assert_eq!(result.all.histogram_count, result.all.ops, "{name}");
        assert_eq!(result.read.histogram_count, result.read.ops, "{name}");
        assert_eq!(result.update.histogram_count, result.update.ops, "{name}");
        assert_eq!(result.read.ops + result.update.ops, result.all.ops, "{name}");
        match workload {
            Workload::C => assert_eq!(result.update.ops, 0, "{name}: updates in a read-only run"),
            Workload::Write => assert_eq!(result.read.ops, 0, "{name}: reads in a write-only run"),
            Workload::A | Workload::B => {
                assert!(result.read.ops > 0, "{name}: no reads");
                assert!(result.update.ops > 0, "{name}: no updates");
            }
        }
        assert!(result.all.p50_us <= result.all.p99_us);
        assert!(result.all.p99_us <= result.all.p999_us);
        assert!(result.all.p999_us <= result.all.max_us);
        assert!(result.all.throughput_ops_s > 0.0);
        assert!(result.elapsed_s >= 0.9, "{name}: measured for {} s", result.elapsed_s);
    }
    assert!(report.table().contains("ops/s"));

    let json: serde_json::Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
    for field in [
        "workload",
        "distribution",
        "records",
        "value_bytes",
        "concurrency",
        "nodes",
        "fsync",
    ] {
        assert!(!json["config"][field].is_null(), "config.{field} missing");
    }
    let results = json["results"].as_array().unwrap();
    assert_eq!(results.len(), targets.len());
    for result in results {
        assert!(result["target"].is_string());
        assert!(result["description"].is_string());
        for op in ["all", "read", "update"] {
            for field in [
                "ops",
                "errors",
                "throughput_ops_s",
                "p50_us",
                "p99_us",
                "p999_us",
                "max_us",
            ] {
                assert!(result[op][field].is_number(), "{op}.{field} missing in {result}");
            }
        }
    }
    assert!(json["skipped"].is_array());
    assert!(json["comparisons"].is_array());
}

async fn run_and_check(targets: Vec<TargetKind>, nodes: usize, workload: Workload) -> Report {
    let report = ringkv_bench::run(&config(targets.clone(), nodes, workload))
        .await
        .unwrap();
    println!("{}", report.table());
    check(&report, &targets, workload);
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_against_one_ringkv_node() {
    run_and_check(vec![TargetKind::Ringkv], 1, Workload::A).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_against_three_ringkv_nodes() {
    run_and_check(vec![TargetKind::Ringkv], 3, Workload::A).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_write_only_with_an_op_budget() {
    let mut config = config(vec![TargetKind::Ringkv], 1, Workload::Write);
    config.limit = Limit::Ops(300);
    config.distribution = Distribution::Uniform;
    let report = ringkv_bench::run(&config).await.unwrap();
    let result = &report.results[0];
    assert_eq!(result.all.ops, 300);
    assert_eq!(result.update.ops, 300);
    assert_eq!(result.all.errors, 0, "{:?}", result.error_examples);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_measure_every_target_once_per_round() {
    let mut config = config(vec![TargetKind::Ringkv], 1, Workload::C);
    config.rounds = 2;
    config.limit = Limit::Ops(200);
    let report = ringkv_bench::run(&config).await.unwrap();
    let rounds: Vec<(TargetKind, usize)> = report.results.iter().map(|r| (r.target, r.round)).collect();
    assert_eq!(rounds, [(TargetKind::Ringkv, 1), (TargetKind::Ringkv, 2)]);
    assert!(report.results.iter().all(|r| r.all.ops == 200 && r.all.errors == 0));
    assert!(report.table().contains("rounds 2"), "{}", report.table());
    let json: serde_json::Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
    assert_eq!(json["config"]["rounds"], 2);
    assert_eq!(json["results"][1]["round"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_rejects_bad_settings() {
    let mut bad = config(vec![TargetKind::Ringkv], 1, Workload::A);
    bad.concurrency = 0;
    let error = ringkv_bench::run(&bad).await.unwrap_err();
    assert!(error.to_string().contains("--concurrency"), "{error}");
    let mut bad = config(vec![TargetKind::Ringkv], 4, Workload::A);
    bad.records = 10;
    let error = ringkv_bench::run(&bad).await.unwrap_err();
    assert!(error.to_string().contains("--nodes"), "{error}");
    let mut bad = config(vec![TargetKind::Ringkv], 1, Workload::A);
    bad.rounds = 0;
    let error = ringkv_bench::run(&bad).await.unwrap_err();
    assert!(error.to_string().contains("--rounds"), "{error}");
}

/// Runs `peer` beside ringkv, or prints what is missing.
async fn against_peer(peer: TargetKind, program: &str, package: &str) {
    if find_program(program).is_none() {
        eprintln!(
            "SKIPPED: {program} is not installed, so ringkv was not compared with {}; \
             install it with `bash scripts/install-peers.sh` (apt-get install {package})",
            peer.name()
        );
        return;
    }
    let report = run_and_check(vec![TargetKind::Ringkv, peer], 1, Workload::B).await;
    assert_eq!(report.comparisons.len(), 1);
    assert_eq!(report.comparisons[0].peer, peer);
    assert_eq!(report.comparisons[0].rounds, 1);
    assert!(report.comparisons[0].throughput_ratio > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_against_redis_when_installed() {
    against_peer(TargetKind::Redis, "redis-server", "redis-server").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_against_etcd_when_installed() {
    against_peer(TargetKind::Etcd, "etcd", "etcd-server").await;
}
