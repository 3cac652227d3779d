//! Directed scenarios that reproduce findings of the issue "Close every hole" on today's
//! code. Each asserts that the simulation's checks *report* the violation: they are the
//! known-violation list in scenario form (docs/simulation.md, "Known violations"). When a
//! fix lands, its test here fails; it then moves to `fixed_findings.rs`, asserting the opposite.

// Every finding of "Close every hole" that had a scenario here is fixed; its scenario
// lives on in `fixed_findings.rs`. A new finding's reproduction goes here.

#[test]
fn every_scenario_of_the_known_list_is_a_test_here() {
    let source = include_str!("known_findings.rs");
    for known in ringkv_sim::seed_lists::known_violations() {
        if let Some(name) = known.scenario {
            assert!(
                source.contains(&format!("fn {name}(")),
                "known-violations.txt names {name}, which is not here"
            );
        }
    }
}
