import TickwireCore
import TickwireFeeds

/// What the ITCH benchmarks share (`tickwire-bench itch` and Benchmarks/FeedsBenchmarks): a large input built
/// from a real slice, the loops measured, and the baseline they are measured against.
public enum ITCHBenchSupport {
    /// `copies` back-to-back copies of a BinaryFILE buffer with the order references renumbered densely and
    /// each copy's placed after the previous copy's. A 1000-message window of a real day uses one reference in
    /// ~125 of its range (the rest belong to messages outside the window); the whole day uses them all, in
    /// order. Renumbering gives the repeated input the reference density, and so the memory access pattern,
    /// of a full feed; every copy adds new orders.
    public static func repeated(_ slice: [UInt8], copies: Int) -> [UInt8] {
        var distinct = Set<UInt64>()
        forEachReference(in: slice) { distinct.insert($0) }
        var rank: [UInt64: UInt64] = [:]
        for (i, r) in distinct.sorted().enumerated() { rank[r] = UInt64(i) + 1 }
        let span = UInt64(distinct.count)
        var out = [UInt8]()
        out.reserveCapacity(slice.count * copies)
        for copy in 0..<copies {
            let start = out.count
            out += slice
            let offset = UInt64(copy) &* span
            var o = start
            while o + 2 <= out.count {
                let length = Int(out[o]) << 8 | Int(out[o + 1])
                let m = o + 2
                func renumber(_ at: Int) {
                    var v: UInt64 = 0
                    for i in 0..<8 { v = v << 8 | UInt64(out[m + at + i]) }
                    v = rank[v]! &+ offset
                    for i in 0..<8 { out[m + at + i] = UInt8(truncatingIfNeeded: v >> (8 * (7 - i))) }
                }
                switch out[m] {
                case UInt8(ascii: "A"), UInt8(ascii: "F"), UInt8(ascii: "E"), UInt8(ascii: "C"), UInt8(ascii: "X"), UInt8(ascii: "D"):
                    renumber(11)
                case UInt8(ascii: "U"):
                    renumber(11); renumber(19)
                default: break
                }
                o = m + length
            }
        }
        return out
    }

    static func forEachReference(in bytes: [UInt8], _ body: (UInt64) -> Void) {
        var o = 0
        while o + 2 <= bytes.count {
            let length = Int(bytes[o]) << 8 | Int(bytes[o + 1])
            let m = o + 2
            func ref(_ at: Int) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 << 8 | UInt64(bytes[m + at + $1]) } }
            switch bytes[m] {
            case UInt8(ascii: "A"), UInt8(ascii: "F"), UInt8(ascii: "E"), UInt8(ascii: "C"), UInt8(ascii: "X"), UInt8(ascii: "D"):
                body(ref(11))
            case UInt8(ascii: "U"):
                body(ref(11)); body(ref(19))
            default: break
            }
            o = m + length
        }
    }

    /// Decode only, in place: frames, validates and reads the header and the type's main fields of every
    /// message. Returns a checksum (so the work cannot be optimised away) and the message count.
    public static func decodeInPlace(_ buffer: UnsafeRawBufferPointer) -> (checksum: UInt64, messages: Int) {
        var reader = BinaryFILEReader(buffer)
        var sum: UInt64 = 0
        var n = 0
        while true {
            guard let m = try? reader.next() else { break }
            n &+= 1
            sum &+= UInt64(m.stockLocate) &+ m.timestamp
            switch m.typeByte {
            case 0x41, 0x46: sum &+= m.orderReference &+ UInt64(m.shares) &+ UInt64(m.price) &+ m.stock(24).raw
            case 0x45, 0x43, 0x58: sum &+= m.orderReference &+ UInt64(m.executedShares)
            case 0x44: sum &+= m.orderReference
            case 0x55: sum &+= m.orderReference &+ m.replaceNewReference &+ UInt64(m.replacePrice)
            default: sum &+= UInt64(m.typeByte)
            }
        }
        return (sum, n)
    }

    /// Decode into the full typed `ITCHBody` of every message (all fields of all 23 types), still in place.
    public static func decodeBodies(_ buffer: UnsafeRawBufferPointer) -> (checksum: UInt64, messages: Int) {
        var reader = BinaryFILEReader(buffer)
        var sum: UInt64 = 0
        var n = 0
        while true {
            guard let m = try? reader.next() else { break }
            n &+= 1
            switch m.body {
            case .addOrder(let ref, _, let shares, let stock, let price, _): sum &+= ref &+ UInt64(shares) &+ UInt64(price) &+ stock.raw
            case .orderExecuted(let ref, let shares, let match): sum &+= ref &+ UInt64(shares) &+ match
            case .orderExecutedWithPrice(let ref, let shares, _, _, let price): sum &+= ref &+ UInt64(shares) &+ UInt64(price)
            case .orderCancel(let ref, let shares): sum &+= ref &+ UInt64(shares)
            case .orderDelete(let ref): sum &+= ref
            case .orderReplace(let ref, let new, let shares, let price): sum &+= ref &+ new &+ UInt64(shares) &+ UInt64(price)
            default: sum &+= 1
            }
        }
        return (sum, n)
    }

    /// Decode and build books, publishing QUOTE/TRADE/STATUS into `sink`. Books are reset every `resetEvery`
    /// messages so the live-order set stays the size of a busy session's (about 40% of the adds stay live).
    public static func decodeAndBuildBooks(_ buffer: UnsafeRawBufferPointer, normalizer: ITCHNormalizer, resetEvery: Int) -> Int {
        var reader = BinaryFILEReader(buffer)
        var n = 0
        var sinceReset = 0
        while true {
            guard let m = try? reader.next() else { break }
            normalizer.handle(m)
            n &+= 1
            sinceReset &+= 1
            if sinceReset == resetEvery { sinceReset = 0; normalizer.books.reset() }
        }
        return n
    }

    /// The memory-bandwidth ceiling: sums the buffer as 64-bit words (what any decoder must at least read).
    public static func byteSum(_ buffer: UnsafeRawBufferPointer) -> UInt64 {
        var sum: UInt64 = 0
        let words = buffer.count / 8
        let base = buffer.baseAddress!
        for i in 0..<words { sum &+= base.loadUnaligned(fromByteOffset: i &* 8, as: UInt64.self) }
        return sum
    }

    /// The baseline: a straightforward decoder that copies each message out of a `[UInt8]` into its own
    /// `Array` (array slicing) and reads its fields into a Swift struct with index arithmetic — what a first
    /// implementation without unsafe pointers looks like.
    public struct CopiedMessage {
        public var type: UInt8, locate: UInt16, timestamp: UInt64, reference: UInt64, shares: UInt32, price: UInt32
    }

    public static func decodeCopying(_ bytes: [UInt8]) -> (checksum: UInt64, messages: Int) {
        func be(_ a: [UInt8], _ at: Int, _ n: Int) -> UInt64 {
            var v: UInt64 = 0
            for i in 0..<n { v = v << 8 | UInt64(a[at + i]) }
            return v
        }
        var o = 0, n = 0
        var sum: UInt64 = 0
        while o + 2 <= bytes.count {
            let length = Int(bytes[o]) << 8 | Int(bytes[o + 1])
            guard length > 0, o + 2 + length <= bytes.count else { break }
            let msg = Array(bytes[(o + 2)..<(o + 2 + length)])
            guard ITCHMessageType.length(ofType: msg[0]) == length else { break }
            var decoded = CopiedMessage(type: msg[0], locate: UInt16(be(msg, 1, 2)), timestamp: be(msg, 5, 6), reference: 0, shares: 0, price: 0)
            switch msg[0] {
            case 0x41, 0x46: decoded.reference = be(msg, 11, 8); decoded.shares = UInt32(be(msg, 20, 4)); decoded.price = UInt32(be(msg, 32, 4))
            case 0x45, 0x43, 0x58: decoded.reference = be(msg, 11, 8); decoded.shares = UInt32(be(msg, 19, 4))
            case 0x44: decoded.reference = be(msg, 11, 8)
            case 0x55: decoded.reference = be(msg, 11, 8); decoded.price = UInt32(be(msg, 31, 4))
            default: break
            }
            sum &+= decoded.timestamp &+ decoded.reference &+ UInt64(decoded.shares) &+ UInt64(decoded.price) &+ UInt64(decoded.locate)
            n += 1
            o += 2 + length
        }
        return (sum, n)
    }
}
