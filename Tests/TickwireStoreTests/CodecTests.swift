import Testing
import TickwireCore
import TickwireTestSupport
@testable import TickwireStore

@Suite struct CodecTests {
    static let shapes: [(String, @Sendable (Int) -> Int64)] = [
        ("constant", { _ in 42 }),
        ("regular timestamps", { 1_767_623_400_000_000_000 + Int64($0) * 1_000_000 }),
        ("jittered timestamps", { 1_767_623_400_000_000_000 + Int64($0) * 1_000_000 + Int64(($0 * 7919) % 1000) }),
        ("tick prices", { (10_000 + Int64(($0 * 31) % 17) - 8) * 1_000_000 }),
        ("extremes", { $0 % 3 == 0 ? Int64.max : $0 % 3 == 1 ? Int64.min : 0 }),
        // Seeded: the same "random" column every run (a SplitMix64 step of the index).
        ("random", { i in
            var z = UInt64(i) &* 0x9E37_79B9_7F4A_7C15 &+ 20_260_105
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Int64(bitPattern: z ^ (z >> 31))
        }),
        ("small negatives", { -Int64($0 % 5) }),
    ]

    /// One block of `values` encoded with the first of the narrowest of `modes`, against `reference`.
    func encoded(_ values: [Int64], reference: [Int64], modes: [ColumnCodec.Mode]) -> [UInt8] {
        var out = [UInt8]()
        let scratch = UnsafeMutablePointer<Int64>.allocate(capacity: values.count)
        defer { scratch.deallocate() }
        values.withUnsafeBufferPointer { v in
            reference.withUnsafeBufferPointer { r in
                ColumnCodec.encode(v.baseAddress!, count: values.count, reference: r.baseAddress!, modes: modes, scratch: scratch, into: &out)
            }
        }
        return out
    }

    @Test(arguments: 0..<shapes.count, [1, 2, 3, 1000, 1024])
    func everyModeRoundTrips(shape: Int, count: Int) {
        let values = (0..<count).map(CodecTests.shapes[shape].1)
        let reference = (0..<count).map { Int64($0) * 3 }
        for modes: [ColumnCodec.Mode] in [[.plain], [.delta], [.deltaOfDelta], [.reference], [.plain, .delta, .deltaOfDelta, .reference]] {
            let out = encoded(values, reference: reference, modes: modes)
            var decoded = [Int64](repeating: 0, count: count)
            let n = out.withUnsafeBytes { p in
                #expect(ColumnCodec.blockSize(p.baseAddress!, available: p.count)?.bytes == p.count)
                return decoded.withUnsafeMutableBufferPointer { d in
                    reference.withUnsafeBufferPointer { ColumnCodec.decode(p.baseAddress!, into: d.baseAddress!, reference: $0.baseAddress!) }
                }
            }
            #expect(n == count)
            #expect(decoded == values, "shape \(CodecTests.shapes[shape].0), modes \(modes)")
        }
    }

    @Test func tickPricesPackToFewBits() {
        let values: [Int64] = (0..<1024).map { (i: Int) -> Int64 in
            let ticks = Int64((i * 7919 + i * i) % 5) - 2
            return (10_000 + ticks) * 1_000_000
        }
        var out = [UInt8]()
        let scratch = UnsafeMutablePointer<Int64>.allocate(capacity: 1024)
        defer { scratch.deallocate() }
        values.withUnsafeBufferPointer {
            ColumnCodec.encode($0.baseAddress!, count: 1024, reference: nil, modes: [.plain, .delta], scratch: scratch, into: &out)
        }
        #expect(out[1] <= 3) // five ticks: at most 3 bits a value
        #expect(out.count <= ColumnCodec.headerSize + 1024 * 3 / 8 + 8)
    }

    /// The mode chosen is the first of the narrowest, each mode's width found by definition (its values' minimum,
    /// the gcd of the offsets by `%`, the bits of the largest quotient): a mode left unframed because it cannot be
    /// narrower than the best so far never changes the choice, the base or the scale.
    @Test(arguments: 0..<shapes.count, [1, 2, 3, 1000, 1024])
    func theChosenModeIsTheFirstOfTheNarrowest(shape: Int, count: Int) {
        var rng = SplitMix(seed: testSeed() &+ UInt64(shape * 10_000 + count))
        let values = (0..<count).map(CodecTests.shapes[shape].1)
        let references: [[Int64]] = [(0..<count).map { Int64($0) * 3 }, values.map { $0 &- Int64(rng.next(below: 4)) * 1000 }, values]
        let lists: [[ColumnCodec.Mode]] = [[.delta, .deltaOfDelta], [.reference, .delta], [.plain, .delta], [.reference, .plain, .delta],
                                           [.deltaOfDelta, .delta, .plain, .reference]]
        for reference in references {
            for modes in lists {
                var want: (mode: ColumnCodec.Mode, width: Int, base: Int64, scale: UInt64)?
                for mode in modes {
                    let skip = mode == .delta ? min(1, count) : mode == .deltaOfDelta ? min(2, count) : 0
                    let t: [Int64] = (skip..<count).map { i in
                        switch mode {
                        case .plain: values[i]
                        case .delta: values[i] &- values[i - 1]
                        case .deltaOfDelta: (values[i] &- values[i - 1]) &- (values[i - 1] &- values[i - 2])
                        case .reference: values[i] &- reference[i]
                        }
                    }
                    let lo = t.min() ?? 0
                    var g: UInt64 = 0
                    for x in t { var (a, b) = (g, UInt64(bitPattern: x &- lo)); while b != 0 { (a, b) = (b, a % b) }; g = a }
                    let range = g == 0 ? 0 : UInt64(bitPattern: (t.max() ?? 0) &- lo) / g
                    var width = range == 0 ? 0 : 64 - range.leadingZeroBitCount
                    if width > ColumnCodec.maxPackedWidth { width = 64 }
                    let candidate = (mode, width, t.isEmpty ? 0 : lo, width == 0 || width == 64 ? 1 : g)
                    if want == nil || width < want!.width { want = candidate }
                }
                let out = encoded(values, reference: reference, modes: modes)
                let got = out.withUnsafeBytes {
                    (ColumnCodec.Mode(rawValue: $0[0])!, Int($0[1]), $0.loadUnaligned(fromByteOffset: 8, as: Int64.self),
                     $0.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
                }
                #expect(got.0 == want!.mode && got.1 == want!.width && got.2 == want!.base && got.3 == want!.scale,
                        "shape \(CodecTests.shapes[shape].0), \(count) values, modes \(modes): \(got) against \(want!)")
            }
        }
    }

    /// A plain block's frame is the column's minimum, the gcd of every offset from it (by `%`, value by value)
    /// and the bits of the largest quotient, whatever comes first in the block: zeros, a two-valued column (buy
    /// and sell in `tag`), offsets whose gcd falls to 1 midway, a single non-zero offset at the end, the offset
    /// right after the first non-zero one the only one that lowers the gcd.
    @Test func theFrameIsTheMinimumTheGcdAndTheWidth() {
        var rng = SplitMix(seed: 5)
        let columns: [[Int64]] = [
            (0..<1024).map { _ in rng.next(below: 2) == 0 ? 1 : 1 | 1 << 8 },
            (0..<1024).map { _ in Int64(rng.next(below: 10) + 1) * 10_000_000_000 },
            (0..<1024).map { $0 < 900 ? 7_000 : Int64(rng.next(below: 50)) * 3_000 + 7_000 },
            (0..<1024).map { $0 == 1023 ? 1_000_007 : 1_000 },
            (0..<1024).map { $0 < 500 ? 100 : $0 == 501 ? 104 : 106 },
            (0..<1024).map { $0 < 512 ? 0 : Int64(bitPattern: rng.next()) },
            (0..<1024).map { _ in -Int64(rng.next(below: 4)) * 6 },
        ]
        for (k, v) in columns.enumerated() {
            let lo = v.min()!
            var g: UInt64 = 0
            for x in v { var (a, b) = (g, UInt64(bitPattern: x &- lo)); while b != 0 { (a, b) = (b, a % b) }; g = a }
            let range = g == 0 ? 0 : UInt64(bitPattern: v.max()! &- lo) / g
            let bits = range == 0 ? 0 : 64 - range.leadingZeroBitCount
            var out = [UInt8]()
            let scratch = UnsafeMutablePointer<Int64>.allocate(capacity: v.count)
            defer { scratch.deallocate() }
            v.withUnsafeBufferPointer {
                ColumnCodec.encode($0.baseAddress!, count: v.count, reference: nil, modes: [.plain], scratch: scratch, into: &out)
            }
            let (width, base, scale) = out.withUnsafeBytes {
                (Int($0[1]), $0.loadUnaligned(fromByteOffset: 8, as: Int64.self), $0.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
            }
            #expect(width == (bits > ColumnCodec.maxPackedWidth ? 64 : bits), "column \(k)")
            #expect(base == lo, "column \(k)")
            #expect(scale == (g == 0 || bits > ColumnCodec.maxPackedWidth ? 1 : g), "column \(k)")
        }
    }

    /// The multiply test and quotient agree with `%` and `/` for every kind of divisor: odd, powers of two, both,
    /// the scales the store meets (1,000 for µs as ns, 10^6 for a price tick) and the extremes.
    @Test func exactDivisionByMultiplicationIsDivision() {
        var rng = SplitMix(seed: 11)
        let divisors: [UInt64] = [1, 2, 3, 7, 8, 10, 1000, 1_000_000, 100_000_000, 3 << 40, UInt64.max, UInt64.max - 1, 1 << 63]
            + (0..<400).map { _ in max(1, rng.next() >> rng.next(below: 64)) }
        for d in divisors {
            let exact = ColumnCodec.ExactDivisor(d)
            for _ in 0..<200 {
                let q = rng.next() % (UInt64.max / d)
                #expect(exact.divides(q &* d) && exact.quotient(q &* d) == q, "d=\(d) q=\(q)")
                let x = rng.next()
                #expect(exact.divides(x) == (x % d == 0), "d=\(d) x=\(x)")
                if x % d == 0 { #expect(exact.quotient(x) == x / d) }
            }
        }
    }
}
