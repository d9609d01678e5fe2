import Foundation

/// The seed of a random test: `TICKWIRE_TEST_SEED` when set (to repeat a failure), else a new one per run.
/// Print it with every failure.
public func testSeed() -> UInt64 {
    if let text = ProcessInfo.processInfo.environment["TICKWIRE_TEST_SEED"], let seed = UInt64(text) { return seed }
    return UInt64.random(in: 0...UInt64.max)
}

/// A small seeded generator (SplitMix64), so a random test repeats from its seed.
public struct SplitMix: RandomNumberGenerator {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
