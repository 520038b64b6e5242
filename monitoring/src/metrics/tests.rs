//! The metrics' unit tests.

use super::*;

#[test]
fn every_label_set_exists_before_any_event() {
    let m = Metrics::new(&Lane::ALL, 2).unwrap();
    let text = m.render();
    for needle in [
        "multibridge_build_info{version=",
        "multibridge_requests{lane=\"main-to-service\",status=\"observed\"} 0",
        "multibridge_votes_sent_total{lane=\"service-to-main\"} 0",
        "multibridge_vote_transactions_total{lane=\"main-to-service\",outcome=\"replaced\"} 0",
        "multibridge_vote_transactions_total{lane=\"service-to-main\",outcome=\"at_fee_cap\"} 0",
        "multibridge_oldest_pending_age_seconds{lane=\"main-to-service\"} 0",
        "multibridge_signer_nonce{chain=\"service\"} 0",
        "multibridge_recovery_stalls_total{lane=\"main-to-service\"} 0",
        "multibridge_claims_resolved_total{lane=\"service-to-main\"} 0",
        "multibridge_stuck_requests{lane=\"main-to-service\",reason=\"insufficient_liquidity\"} 0",
        "multibridge_rpc_requests_total{chain=\"main\",endpoint=\"1\",method=\"eth_blockNumber\",outcome=\"rate_limited\"} 0",
        "multibridge_handle_latency_seconds_count{lane=\"service-to-main\"} 0",
        "multibridge_lower_handle_nonce{lane=\"main-to-service\"} 0",
        "multibridge_leader{lane=\"service-to-main\"} 0",
        "multibridge_conservation_ok{asset=\"native\",lane=\"main-to-service\"} 1",
        "multibridge_signer_balance{chain=\"main\"} 0",
        "multibridge_chain_up{chain=\"service\"} 0",
        "multibridge_vote_divergence_total{lane=\"main-to-service\"} 0",
        "multibridge_registry_updates_total{outcome=\"failed\"} 0",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    m.lane(Lane::MainToService).votes_sent.inc_by(3);
    m.lane(Lane::ServiceToMain).vote_tx(VoteTxOutcome::OutOfGas);
    m.chain(ChainRole::Main)
        .rpc(1, "eth_call", RpcOutcome::RateLimited);
    assert!(
        m.render()
            .contains("multibridge_votes_sent_total{lane=\"main-to-service\"} 3")
    );
    let text = m.render();
    assert!(text.contains(
        "multibridge_vote_transactions_total{lane=\"service-to-main\",outcome=\"out_of_gas\"} 1"
    ));
    assert!(text.contains(
        "multibridge_rpc_requests_total{chain=\"main\",endpoint=\"1\",method=\"eth_call\",outcome=\"rate_limited\"} 1"
    ));
}
