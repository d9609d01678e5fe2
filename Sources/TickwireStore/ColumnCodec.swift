/// Encodes a block of Int64 values with the cheapest of a few transforms, each followed by frame-of-reference
/// bit packing (docs/STORAGE.md, "Column blocks"):
///
/// - `plain`: v
/// - `delta`: v[i] - v[i-1] (first value in the header)
/// - `deltaOfDelta`: (v[i] - v[i-1]) - (v[i-1] - v[i-2]) (first value and first delta in the header)
/// - `reference`: v[i] - r[i], against another column of the same rows (known time against event time,
///   ask against bid)
///
/// The transformed values t are stored as `(t - base) / scale` in `width` bits, where base is their minimum and
/// scale their greatest common divisor: prices on a tick grid and round-lot sizes pack to a few bits.
/// All arithmetic wraps, so any Int64 round-trips exactly.
enum ColumnCodec {
    enum Mode: UInt8 { case plain = 0, delta = 1, deltaOfDelta = 2, reference = 3 }

    static let headerSize = 40
    /// Widths above this are stored as whole 64-bit words, so every narrower value is one unaligned load.
    static let maxPackedWidth = 56

    /// Appends one encoded block of `n` values to `out`, trying each of `modes`: the first of the narrowest wins.
    static func encode(_ v: UnsafePointer<Int64>, count n: Int, reference: UnsafePointer<Int64>?, modes: [Mode],
                       scratch t: UnsafeMutablePointer<Int64>, into out: inout [UInt8]) {
        precondition(n > 0)
        var best: (mode: Mode, width: Int, base: Int64, scale: UInt64)?
        var inScratch: Mode?
        for mode in modes {
            if mode == .reference && reference == nil { continue }
            let (skip, lo, hi) = transform(v, n, reference, mode, t)
            inScratch = mode
            // A mode that cannot be narrower than the best so far is not framed: its divisor pass is most of a
            // mode's cost (docs/BENCH-HISTORY.md, T4).
            if let b = best, widthAtLeast(t, n, skip, lo, hi) >= b.width { continue }
            let (base, scale, width) = frame(t, n, skip, lo, hi)
            if best == nil || width < best!.width { best = (mode, width, base, scale) }
        }
        let chosen = best!
        // The chosen mode's values are still in `t` when it was the last one tried.
        let skip = chosen.mode == inScratch ? skipped(chosen.mode, n) : transform(v, n, reference, chosen.mode, t).skip
        for i in 0..<skip { t[i] = chosen.base }
        let first = v[0], firstDelta = n > 1 ? v[1] &- v[0] : 0
        var header = [UInt8](repeating: 0, count: headerSize)
        header[0] = chosen.mode.rawValue
        header[1] = UInt8(chosen.width)
        header.withUnsafeMutableBytes { h in
            h.storeBytes(of: UInt32(n).littleEndian, toByteOffset: 4, as: UInt32.self)
            h.storeBytes(of: chosen.base.littleEndian, toByteOffset: 8, as: Int64.self)
            h.storeBytes(of: Int64(bitPattern: chosen.scale).littleEndian, toByteOffset: 16, as: Int64.self)
            h.storeBytes(of: first.littleEndian, toByteOffset: 24, as: Int64.self)
            h.storeBytes(of: firstDelta.littleEndian, toByteOffset: 32, as: Int64.self)
        }
        out.append(contentsOf: header)
        pack(t, n, base: chosen.base, scale: chosen.scale, width: chosen.width, into: &out)
    }

    /// Bytes an encoded block takes after its header: the packed bits, rounded up to 8, plus 8 bytes of slack so
    /// the decoder may always load a whole word.
    static func packedBytes(count n: Int, width: Int) -> Int { ((n * width + 63) / 64) * 8 + 8 }

    /// Leading values a mode keeps in the header rather than in `t`: the first (delta), the first two (delta of delta).
    private static func skipped(_ mode: Mode, _ n: Int) -> Int {
        switch mode {
        case .plain, .reference: 0
        case .delta: min(1, n)
        case .deltaOfDelta: min(2, n)
        }
    }

    /// Writes the mode's values from `skip` on into `t`, and returns `skip` with their minimum and maximum (both
    /// 0 when there are none).
    private static func transform(_ v: UnsafePointer<Int64>, _ n: Int, _ r: UnsafePointer<Int64>?, _ mode: Mode,
                                  _ t: UnsafeMutablePointer<Int64>) -> (skip: Int, lo: Int64, hi: Int64) {
        switch mode {
        case .plain: for i in 0..<n { t[i] = v[i] }
        case .delta: for i in 1..<max(n, 1) { t[i] = v[i] &- v[i - 1] }
        case .deltaOfDelta: for i in stride(from: 2, to: n, by: 1) { t[i] = (v[i] &- v[i - 1]) &- (v[i - 1] &- v[i - 2]) }
        case .reference: for i in 0..<n { t[i] = v[i] &- r![i] }
        }
        let skip = skipped(mode, n)
        guard skip < n else { return (skip, 0, 0) }
        let (lo, hi) = minMax(t, skip, n)
        return (skip, lo, hi)
    }

    /// The minimum and maximum of t[a..<b] (a < b), in four independent chains: one chain of compares and
    /// moves waited on itself element after element, and was almost half of the codec's time (T4).
    @inline(__always)
    private static func minMax(_ t: UnsafePointer<Int64>, _ a: Int, _ b: Int) -> (Int64, Int64) {
        var l0 = t[a], l1 = l0, l2 = l0, l3 = l0, h0 = l0, h1 = l0, h2 = l0, h3 = l0
        var i = a &+ 1
        while i &+ 4 <= b {
            let x0 = t[i], x1 = t[i &+ 1], x2 = t[i &+ 2], x3 = t[i &+ 3]
            l0 = Swift.min(l0, x0); h0 = Swift.max(h0, x0)
            l1 = Swift.min(l1, x1); h1 = Swift.max(h1, x1)
            l2 = Swift.min(l2, x2); h2 = Swift.max(h2, x2)
            l3 = Swift.min(l3, x3); h3 = Swift.max(h3, x3)
            i &+= 4
        }
        while i < b { l0 = Swift.min(l0, t[i]); h0 = Swift.max(h0, t[i]); i &+= 1 }
        return (Swift.min(Swift.min(l0, l1), Swift.min(l2, l3)), Swift.max(Swift.max(h0, h1), Swift.max(h2, h3)))
    }

    /// Bits a quotient up to `range` takes: at most `maxPackedWidth`, else a whole word.
    @inline(__always)
    private static func width(_ range: UInt64) -> Int {
        let w = range == 0 ? 0 : 64 - range.leadingZeroBitCount
        return w > maxPackedWidth ? 64 : w
    }

    /// A lower bound of `frame`'s width: the block's divisor divides the gcd of any of its offsets, so the range
    /// over the gcd of the first few non-zero offsets can only be smaller than the range over the divisor.
    private static func widthAtLeast(_ t: UnsafeMutablePointer<Int64>, _ n: Int, _ skip: Int, _ lo: Int64, _ hi: Int64) -> Int {
        guard skip < n, hi != lo else { return 0 }
        var g: UInt64 = 0, found = 0, i = skip
        while i < n && found < 4 && g != 1 {
            let x = UInt64(bitPattern: t[i] &- lo)
            if x != 0 { g = gcd(g, x); found += 1 }
            i += 1
        }
        return width(UInt64(bitPattern: hi &- lo) / g)
    }

    /// The minimum (`lo`, from `transform`), the common divisor of the offsets from it, and the bit width they need.
    private static func frame(_ t: UnsafeMutablePointer<Int64>, _ n: Int, _ skip: Int, _ lo: Int64, _ hi: Int64) -> (Int64, UInt64, Int) {
        guard skip < n else { return (0, 1, 0) }
        // Most offsets are multiples of the divisor found so far (times in µs as ns, prices on a tick): each is
        // tested with a multiply (`ExactDivisor`), and only one that is not costs a gcd. Zero passes the test, so
        // the loop has no branch on it (a column of two values, such as buy and sell in `tag`, mispredicted it
        // half the time; docs/BENCH-HISTORY.md, T3).
        var first = skip
        while first < n && t[first] == lo { first += 1 }
        guard first < n else { return (lo, 1, 0) }
        var g = UInt64(bitPattern: t[first] &- lo), divisor = ExactDivisor(g)
        var i = first + 1
        while i < n && g != 1 {
            let x = UInt64(bitPattern: t[i] &- lo)
            if !divisor.divides(x) { g = gcd(g, x); divisor = ExactDivisor(g) }
            i += 1
        }
        let w = width(UInt64(bitPattern: hi &- lo) / g)
        return (lo, w == 64 ? 1 : g, w)
    }

    private static func gcd(_ a0: UInt64, _ b0: UInt64) -> UInt64 {
        var a = a0, b = b0
        while b != 0 { (a, b) = (b, a % b) }
        return a
    }

    /// Division by a constant that is exact (the dividend a multiple of it), and the test for it, by
    /// multiplication: d = 2^k · m with m odd; x is a multiple of d when its low k bits are zero and
    /// (x >> k) · m⁻¹ (mod 2^64) is at most (2^64 − 1) / m, and that product is then x / d (Granlund and
    /// Montgomery, "Division by invariant integers using multiplication", 1994, §9).
    struct ExactDivisor {
        let shift: UInt64
        let inverse: UInt64
        let limit: UInt64

        init(_ d: UInt64) {
            precondition(d > 0)
            let k = d.trailingZeroBitCount
            let m = d >> UInt64(k)
            var y = m   // correct to 3 bits: m · m ≡ 1 (mod 8) for odd m; each step doubles them
            for _ in 0..<5 { y = y &* (2 &- m &* y) }
            shift = UInt64(k); inverse = y; limit = UInt64.max / m
        }

        @inline(__always) func divides(_ x: UInt64) -> Bool {
            x.trailingZeroBitCount >= Int(shift) && (x &>> shift) &* inverse <= limit
        }

        /// x / d, for x a multiple of d.
        @inline(__always) func quotient(_ x: UInt64) -> UInt64 { (x &>> shift) &* inverse }
    }

    private static func pack(_ t: UnsafePointer<Int64>, _ n: Int, base: Int64, scale: UInt64, width: Int, into out: inout [UInt8]) {
        let bytes = packedBytes(count: n, width: width)
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: bytes))
        guard width > 0 else { return }
        out.withUnsafeMutableBytes { raw in
            let p = raw.baseAddress! + start
            var acc: UInt64 = 0, bits = 0, word = 0
            let divisor = ExactDivisor(scale)   // every offset is a multiple of the scale (`frame`)
            for i in 0..<n {
                let u = divisor.quotient(UInt64(bitPattern: t[i] &- base))
                if width == 64 {
                    p.storeBytes(of: u.littleEndian, toByteOffset: i * 8, as: UInt64.self)
                    continue
                }
                acc |= u << UInt64(bits)
                bits += width
                if bits >= 64 {
                    p.storeBytes(of: acc.littleEndian, toByteOffset: word * 8, as: UInt64.self)
                    word += 1
                    bits -= 64
                    acc = bits == 0 ? 0 : u >> UInt64(width - bits)
                }
            }
            if bits > 0 && width != 64 { p.storeBytes(of: acc.littleEndian, toByteOffset: word * 8, as: UInt64.self) }
        }
    }

    /// The number of values and the total encoded size of the block at `p`, checked against `available` bytes.
    static func blockSize(_ p: UnsafeRawPointer, available: Int) -> (count: Int, bytes: Int)? {
        guard available >= headerSize else { return nil }
        let mode = p.load(fromByteOffset: 0, as: UInt8.self), width = Int(p.load(fromByteOffset: 1, as: UInt8.self))
        guard Mode(rawValue: mode) != nil, width <= maxPackedWidth || width == 64 else { return nil }
        let n = Int(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
        let bytes = headerSize + packedBytes(count: n, width: width)
        return bytes <= available ? (n, bytes) : nil
    }

    /// Decodes a block (validated by `blockSize`) into `out`; returns the value count. The transform is fused
    /// into the unpacking loop: one pass over the output.
    /// - warning: `reference` must hold the block's reference column already decoded when the mode needs it.
    @inline(__always)
    static func decode(_ p: UnsafeRawPointer, into out: UnsafeMutablePointer<Int64>, reference: UnsafePointer<Int64>?) -> Int {
        let mode = p.load(fromByteOffset: 0, as: UInt8.self)
        let width = Int(p.load(fromByteOffset: 1, as: UInt8.self))
        let n = Int(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
        let base = Int64(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: Int64.self))
        let scale = Int64(littleEndian: p.loadUnaligned(fromByteOffset: 16, as: Int64.self))
        let first = Int64(littleEndian: p.loadUnaligned(fromByteOffset: 24, as: Int64.self))
        let data = p + headerSize
        switch mode {
        case Mode.delta.rawValue:
            out[0] = first
            var acc = first
            unpack(data, from: 1, to: n, width: width, base: base, scale: scale) { i, t in acc = acc &+ t; out[i] = acc }
        case Mode.deltaOfDelta.rawValue:
            out[0] = first
            guard n > 1 else { break }
            var delta = Int64(littleEndian: p.loadUnaligned(fromByteOffset: 32, as: Int64.self))
            var acc = first &+ delta
            out[1] = acc
            unpack(data, from: 2, to: n, width: width, base: base, scale: scale) { i, t in
                delta = delta &+ t; acc = acc &+ delta; out[i] = acc
            }
        case Mode.reference.rawValue:
            let r = reference!
            unpack(data, from: 0, to: n, width: width, base: base, scale: scale) { i, t in out[i] = r[i] &+ t }
        default:
            unpack(data, from: 0, to: n, width: width, base: base, scale: scale) { i, t in out[i] = t }
        }
        return n
    }

    /// Calls `body(i, base + scale · u[i])` for i in lo..<hi.
    @inline(__always)
    private static func unpack(_ data: UnsafeRawPointer, from lo: Int, to hi: Int, width: Int, base: Int64, scale: Int64,
                               _ body: (Int, Int64) -> Void) {
        guard lo < hi else { return }
        if width == 0 {
            for i in lo..<hi { body(i, base) }
        } else if width == 64 {
            for i in lo..<hi { body(i, base &+ Int64(littleEndian: data.loadUnaligned(fromByteOffset: i &* 8, as: Int64.self))) }
        } else {
            let mask = (UInt64(1) << UInt64(width)) &- 1
            var bit = lo &* width
            if scale == 1 {
                for i in lo..<hi {
                    let word = UInt64(littleEndian: data.loadUnaligned(fromByteOffset: bit &>> 3, as: UInt64.self))
                    body(i, base &+ Int64(bitPattern: (word &>> UInt64(bit & 7)) & mask))
                    bit &+= width
                }
            } else {
                for i in lo..<hi {
                    let word = UInt64(littleEndian: data.loadUnaligned(fromByteOffset: bit &>> 3, as: UInt64.self))
                    body(i, base &+ scale &* Int64(bitPattern: (word &>> UInt64(bit & 7)) & mask))
                    bit &+= width
                }
            }
        }
    }
}
