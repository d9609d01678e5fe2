import TickwireCore

/// The deterministic synthetic market the store benchmarks and Tools/asof_peers.py share (BENCHMARKS.md), so
/// both sides measure identical data without exchanging files.
///
/// `r(s, i) = splitmix64(i * 16 + s) >> 1` (wrapping u64 arithmetic; a non-negative 63-bit value). With `S`
/// symbols, quote `i` and trade `j` belong to symbol `i % S` (`j % S`) at step `k = i / S` (`j / S`), and
/// `t0` = 2026-01-05T14:30:00Z:
/// - quote: event time `t0 + k·2ms + r(0,i) % 2ms`; known time `+ 20µs + r(1,i) % 100µs`; mid in ticks of 0.01
///   `10000 + 100·sym + Σ_{k'≤k} (r(2, k'S+sym) % 5 − 2)`; bid = mid; ask = bid + (1 + r(3,i) % 3) ticks;
///   bid size `(1 + r(4,i) % 20)·100`, ask size `(1 + r(5,i) % 20)·100`.
/// - trade: event time `t0 + k·2ms + r(8,j) % 2ms`; known time `+ 20µs + r(9,j) % 100µs`; price
///   `(10000 + 100·sym + r(10,j) % 50)` ticks; size `(1 + r(11,j) % 10)·100`; side buy when `r(12,j)` is even;
///   trade id `j + 1`.
/// - subjects `MD.SYN.S0000.QUOTE`, `MD.SYN.S0000.TRADE`, …; fixed point e8 throughout.
public struct SyntheticMarket: Sendable {
    public let symbols: Int
    public let quotes: Int
    public let trades: Int
    public static let t0: Int64 = 1_767_623_400_000_000_000
    public static let step: Int64 = 2_000_000
    public static let tick: Int64 = 1_000_000

    public init(symbols: Int, quotes: Int, trades: Int) {
        precondition(symbols > 0 && symbols <= 10_000)
        self.symbols = symbols; self.quotes = quotes; self.trades = trades
    }

    @inline(__always) public static func splitmix64(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    @inline(__always) static func r(_ s: UInt64, _ i: Int) -> Int64 {
        Int64(bitPattern: splitmix64(UInt64(i) &* 16 &+ s) >> 1)
    }

    public func symbolName(_ s: Int) -> String {
        let d = String(s)
        return "S" + String(repeating: "0", count: max(0, 4 - d.count)) + d
    }

    /// Interns the subjects: quote subject ids first (`symbols` of them), then trade subject ids.
    public func intern(into table: SubjectTable) -> (quote: [SubjectID], trade: [SubjectID]) {
        ((0..<symbols).map { table.intern(text: "MD.SYN.\(symbolName($0)).QUOTE") },
         (0..<symbols).map { table.intern(text: "MD.SYN.\(symbolName($0)).TRADE") })
    }

    /// Every event in arrival order (step by step, each symbol's quote then its trade), calling `body` for each.
    public func generate(quoteIDs: [SubjectID], tradeIDs: [SubjectID], _ body: (Event) throws -> Void) rethrows {
        var mid = (0..<symbols).map { Int64(10_000 + 100 * $0) }
        let steps = max((quotes + symbols - 1) / symbols, (trades + symbols - 1) / symbols)
        for k in 0..<steps {
            for sym in 0..<symbols {
                let i = k * symbols + sym
                if i < quotes {
                    let et = SyntheticMarket.t0 + Int64(k) * SyntheticMarket.step + SyntheticMarket.r(0, i) % SyntheticMarket.step
                    let kt = et + 20_000 + SyntheticMarket.r(1, i) % 100_000
                    mid[sym] += SyntheticMarket.r(2, i) % 5 - 2
                    let bid = mid[sym] * SyntheticMarket.tick
                    try body(.quote(quoteIDs[sym], bid: Price(e8: bid), bidSize: Quantity(e8: (1 + SyntheticMarket.r(4, i) % 20) * 100 * 100_000_000),
                                    ask: Price(e8: bid + (1 + SyntheticMarket.r(3, i) % 3) * SyntheticMarket.tick),
                                    askSize: Quantity(e8: (1 + SyntheticMarket.r(5, i) % 20) * 100 * 100_000_000),
                                    eventTime: Nanos(et), knownTime: Nanos(kt)))
                }
                if i < trades {
                    let et = SyntheticMarket.t0 + Int64(k) * SyntheticMarket.step + SyntheticMarket.r(8, i) % SyntheticMarket.step
                    let kt = et + 20_000 + SyntheticMarket.r(9, i) % 100_000
                    try body(.trade(tradeIDs[sym], price: Price(e8: (10_000 + 100 * Int64(sym) + SyntheticMarket.r(10, i) % 50) * SyntheticMarket.tick),
                                    size: Quantity(e8: (1 + SyntheticMarket.r(11, i) % 10) * 100 * 100_000_000),
                                    side: SyntheticMarket.r(12, i) % 2 == 0 ? .buy : .sell, tradeID: UInt64(i + 1),
                                    eventTime: Nanos(et), knownTime: Nanos(kt)))
                }
            }
        }
    }
}
