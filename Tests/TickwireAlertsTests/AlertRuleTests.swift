import Testing
import TickwireAlerts
import TickwireCore

@Suite(.timeLimit(.minutes(5))) struct AlertConfigTests {
    @Test func readsEveryRuleWithItsParameters() throws {
        let rules = try AlertRule.parseAll([
            ["rule": "price_jump", "subjects": "MD.XNAS.*.TRADE", "bps": "50", "window_ms": "250", "cooldown_ms": "0"],
            ["rule": "crossed_market", "subjects": "MD.*.*.QUOTE", "locked": "false"],
            ["rule": "volume_spike", "subjects": "MD.*.*.TRADE", "bucket_ms": "1_000", "factor": "2.5", "min_buckets": "3"],
            ["rule": "stale_quote", "subjects": "MD.*.*.QUOTE", "window_ms": "3000", "cooldown_ms": "60000"],
            ["rule": "trade_outside_quote", "subjects": "MD.>", "tolerance_bps": "5"],
        ])
        #expect(rules == [
            AlertRule(.priceJump(bps: 50, windowNanos: 250_000_000), subjects: try SubjectPattern("MD.XNAS.*.TRADE"), cooldownNanos: 0),
            AlertRule(.crossedMarket(alertOnLocked: false), subjects: try SubjectPattern("MD.*.*.QUOTE")),
            AlertRule(.volumeSpike(bucketNanos: 1_000_000_000, factorE8: 250_000_000, minBuckets: 3, lookbackBuckets: 60),
                      subjects: try SubjectPattern("MD.*.*.TRADE")),
            AlertRule(.staleQuote(windowNanos: 3_000_000_000), subjects: try SubjectPattern("MD.*.*.QUOTE"), cooldownNanos: 60_000_000_000),
            AlertRule(.tradeOutsideQuote(toleranceBps: 5), subjects: try SubjectPattern("MD.>")),
        ])
    }

    @Test(arguments: [
        ([["rule": "price_jump", "subjects": "MD.>", "bps": "5", "window_ms": "1"], ["rule": "price_jumpp"]],
         "alerts[1] (rule 'price_jumpp'), key 'rule': unknown rule; one of price_jump, crossed_market, volume_spike, stale_quote, trade_outside_quote"),
        ([["subjects": "MD.>"]], "alerts[0], key 'rule': missing; one of price_jump, crossed_market, volume_spike, stale_quote, trade_outside_quote"),
        ([["rule": "price_jump", "subjects": "MD.>", "bps": "5", "window": "1"]],
         "alerts[0] (rule 'price_jump'), key 'window': unknown parameter; price_jump takes subjects, cooldown_ms, bps, window_ms"),
        ([["rule": "price_jump", "subjects": "MD.>", "bps": "5"]],
         "alerts[0] (rule 'price_jump'), key 'window_ms': missing; price_jump needs it (docs/ALERTS.md)"),
        ([["rule": "price_jump", "subjects": "MD.>", "bps": "five", "window_ms": "1"]],
         "alerts[0] (rule 'price_jump'), key 'bps': 'five' is not an integer"),
        ([["rule": "price_jump", "subjects": "MD.>", "bps": "0", "window_ms": "1"]],
         "alerts[0] (rule 'price_jump'), key 'bps': 0 is out of range; it must be between 1 and 100000"),
        ([["rule": "stale_quote", "subjects": "MD.*..QUOTE", "window_ms": "1"]],
         "alerts[0] (rule 'stale_quote'), key 'subjects': token 3 is empty (two dots in a row, or a leading or trailing dot)"),
        ([["rule": "stale_quote", "window_ms": "1"]],
         "alerts[0] (rule 'stale_quote'), key 'subjects': missing; stale_quote needs it (docs/ALERTS.md)"),
        ([["rule": "volume_spike", "subjects": "MD.>", "bucket_ms": "10", "factor": "1e3"]],
         "alerts[0] (rule 'volume_spike'), key 'factor': invalid number '1e3': 'e' is not a digit"),
        ([["rule": "volume_spike", "subjects": "MD.>", "bucket_ms": "10", "factor": "0.5"]],
         "alerts[0] (rule 'volume_spike'), key 'factor': 0.5 is out of range; it must be between 1 and 1000000"),
        ([["rule": "volume_spike", "subjects": "MD.>", "bucket_ms": "10", "factor": "2", "min_buckets": "9", "lookback_buckets": "8"]],
         "alerts[0] (rule 'volume_spike'), key 'min_buckets': 9 is more than lookback_buckets (8); it could never fire"),
        ([["rule": "crossed_market", "subjects": "MD.>", "locked": "yes"]],
         "alerts[0] (rule 'crossed_market'), key 'locked': 'yes' is not true or false"),
        ([["rule": "trade_outside_quote", "subjects": "MD.>", "cooldown_ms": "-1"]],
         "alerts[0] (rule 'trade_outside_quote'), key 'cooldown_ms': -1 is out of range; it must be between 0 and 86400000"),
    ])
    func aBadEntryIsAnErrorNamingTheEntryTheRuleAndTheKey(entries: [[String: String]], message: String) {
        #expect(throws: AlertConfigError.self) { try AlertRule.parseAll(entries) }
        do {
            _ = try AlertRule.parseAll(entries)
        } catch {
            #expect(error.description == message)
        }
    }

    @Test func theEmbeddedDefaultsRunEveryRule() {
        #expect(AlertRule.defaults.map(\.kind.name) == AlertRule.ruleNames)
    }
}
