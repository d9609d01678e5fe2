import Foundation
import TickwireFeeds

/// The seed of a random test: `TICKWIRE_TEST_SEED` when set (to repeat a failure), else a new one per run.
/// Print it with every failure.
public func testSeed() -> UInt64 {
    if let text = ProcessInfo.processInfo.environment["TICKWIRE_TEST_SEED"], let seed = UInt64(text) { return seed }
    return UInt64.random(in: 0...UInt64.max)
}

/// The seeded generator random tests use: the simulator's SplitMix64.
public typealias SplitMix = SplitMix64
