import TickwireCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Parsing a mapped CSV file's rows on two threads while the caller emits them in file order.
///
/// The body (after the header) is cut into segments of about `segmentBytes` at line ends. The calling thread
/// emits segment after segment in order; a helper thread parses segments ahead of it (at most `window` ahead, so
/// memory stays bounded whatever the file's size), and the calling thread parses whatever segment is next and
/// not yet taken, so neither waits while there is work. Line numbers in a segment's results are relative to the
/// segment; the caller adds the lines of the segments before it.
final class CSVParallel<Result>: @unchecked Sendable {
    let segments: [Range<Int>]
    let window: Int
    private let parse: (Range<Int>) -> Result
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var taken: [Bool]
    private var results: [Result?]
    private var emitted = 0
    private var abandoned = false

    /// - Parameters:
    ///   - body: the byte range of the rows in `bytes`.
    ///   - parse: parses one segment's rows (called on either thread; must touch no shared state but what is
    ///     itself thread-safe).
    init(bytes: UnsafeRawBufferPointer, body: Range<Int>, segmentBytes: Int = 8 << 20, window: Int = 4,
         parse: @escaping (Range<Int>) -> Result) {
        var segs = [Range<Int>]()
        var start = body.lowerBound
        while start < body.upperBound {
            var end = min(start + segmentBytes, body.upperBound)
            while end < body.upperBound && bytes[end - 1] != UInt8(ascii: "\n") { end += 1 }
            segs.append(start..<end)
            start = end
        }
        segments = segs
        self.window = window
        self.parse = parse
        taken = [Bool](repeating: false, count: segs.count)
        results = [Result?](repeating: nil, count: segs.count)
        mutex.initialize(to: pthread_mutex_t())
        cond.initialize(to: pthread_cond_t())
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        cond.deallocate()
    }

    /// Calls `body` with each segment's result in file order; stops when it returns false.
    func forEachInOrder(_ body: (Result) -> Bool) {
        var helper = pthread_t()
        let box = Unmanaged.passRetained(ThreadBody { [self] in help() }).toOpaque()
        let started = segments.count > 1 && pthread_create(&helper, nil, { arg in
            Unmanaged<ThreadBody>.fromOpaque(arg!).takeRetainedValue().run()
            return nil
        }, box) == 0
        if !started { Unmanaged<ThreadBody>.fromOpaque(box).release() }
        defer {
            pthread_mutex_lock(mutex)
            abandoned = true
            pthread_cond_broadcast(cond)
            pthread_mutex_unlock(mutex)
            if started { pthread_join(helper, nil) }
        }
        var k = 0
        while k < segments.count {
            pthread_mutex_lock(mutex)
            if let r = results[k] {
                results[k] = nil
                emitted = k + 1
                pthread_cond_broadcast(cond)
                pthread_mutex_unlock(mutex)
                if !body(r) { return }
                k += 1
                continue
            }
            if let j = (k..<min(segments.count, k + window)).first(where: { !taken[$0] }) {
                taken[j] = true
                pthread_mutex_unlock(mutex)
                let r = parse(segments[j])
                pthread_mutex_lock(mutex)
                results[j] = r
                pthread_mutex_unlock(mutex)
                continue
            }
            pthread_cond_wait(cond, mutex)
            pthread_mutex_unlock(mutex)
        }
    }

    private func help() {
        pthread_mutex_lock(mutex)
        while true {
            if abandoned { break }
            guard let j = (emitted..<min(segments.count, emitted + window)).first(where: { !taken[$0] }) else {
                if !taken.contains(false) { break }
                pthread_cond_wait(cond, mutex)
                continue
            }
            taken[j] = true
            pthread_mutex_unlock(mutex)
            let r = parse(segments[j])
            pthread_mutex_lock(mutex)
            results[j] = r
            pthread_cond_broadcast(cond)
        }
        pthread_mutex_unlock(mutex)
    }
}

/// What a helper thread runs (a C thread entry cannot capture a generic context).
private final class ThreadBody {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// Byte-level field readers for the fast path: each returns nil for anything but the plain form, and the
/// caller then reads the row through the `CSVField` readers, which accept exactly what they accepted before and
/// name what is wrong.
enum FastField {
    /// A non-negative decimal integer of at most 18 digits.
    @inline(__always)
    static func digits(_ p: UnsafeRawBufferPointer, _ r: Range<Int>) -> Int64? {
        guard !r.isEmpty, r.count <= 18 else { return nil }
        var v: Int64 = 0
        var i = r.lowerBound
        // Eight digits at a time (a timestamp in µs has 16): one check and three multiplies, not eight steps.
        while i &+ 8 <= r.upperBound {
            let w = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            guard SWAR.areEightDigits(w) else { return nil }
            v = v &* 100_000_000 &+ Int64(SWAR.eightDigits(w))
            i &+= 8
        }
        while i < r.upperBound {
            let d = p[i] &- UInt8(ascii: "0")
            guard d < 10 else { return nil }
            v = v &* 10 &+ Int64(d)
            i &+= 1
        }
        return v
    }

    /// A decimal as fixed point e8 (`FixedPoint.parseE8(bytes:)`).
    @inline(__always)
    static func e8(_ p: UnsafeRawBufferPointer, _ r: Range<Int>) -> Int64? {
        FixedPoint.parseE8(bytes: UnsafeRawBufferPointer(rebasing: p[r]))
    }

    @inline(__always)
    static func equals(_ p: UnsafeRawBufferPointer, _ r: Range<Int>, _ text: StaticString) -> Bool {
        guard r.count == text.utf8CodeUnitCount else { return false }
        return memcmp(p.baseAddress! + r.lowerBound, text.utf8Start, r.count) == 0
    }
}

/// Subjects found by the bytes of a row's two key fields (exchange and symbol) in the mapped file, so that a
/// row of a pair seen before costs a hash and a compare, not the strings and dictionary lookup of the first.
///
/// A pair whose fields are both at most 16 bytes (every venue and symbol seen so far) is keyed by those bytes as
/// four words and the two lengths: hashed with a few multiplies and compared word by word, with no call and no
/// loop over bytes (the byte loops and `memcmp` were a third of the parse's own samples; docs/BENCH-HISTORY.md,
/// T4). A longer pair is keyed by where it first occurs in the mapped file (which stays mapped for the whole
/// parse), hashed eight bytes a step and compared with `memcmp`.
struct SubjectsByBytes {
    /// Both fields' bytes, zero past each field's length, and the lengths: equal keys are equal pairs.
    struct ShortKey: Equatable {
        var a0: UInt64, a1: UInt64, b0: UInt64, b1: UInt64, lengths: UInt64

        @inline(__always)
        var hash: UInt64 {
            var h = (a0 ^ lengths) &* 0x9E37_79B9_7F4A_7C15
            h = (h ^ a1 ^ (h &>> 29)) &* 0xFF51_AFD7_ED55_8CCD
            h = (h ^ b0 ^ (h &>> 32)) &* 0xC4CE_B9FE_1A85_EC53
            h = (h ^ b1 ^ (h &>> 29)) &* 0x9E37_79B9_7F4A_7C15
            return h ^ (h &>> 32)
        }
    }

    private struct LongEntry { var hash: UInt64; var first: Range<Int>; var second: Range<Int>; var subject: SubjectID }
    private var shortSlots = [Int32](repeating: -1, count: 256)
    private var shortKeys: [ShortKey] = []
    private var shortSubjects: [SubjectID] = []
    private var longSlots = [Int32](repeating: -1, count: 16)
    private var longEntries: [LongEntry] = []
    /// The previous row's short key and subject, and its long entry: most files repeat a pair row after row.
    private var lastKey = ShortKey(a0: 0, a1: 0, b0: 0, b1: 0, lengths: UInt64.max)
    private var lastSubject: SubjectID = 0
    private var lastLong = -1

    /// The words of a field of at most 16 bytes: two loads and a mask where 16 bytes can be read from its start,
    /// byte by byte at the very end of the file.
    @inline(__always)
    static func words(_ p: UnsafeRawBufferPointer, _ r: Range<Int>) -> (UInt64, UInt64) {
        let n = r.count
        if r.lowerBound &+ 16 <= p.count {
            let w0 = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: r.lowerBound, as: UInt64.self))
            let w1 = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: r.lowerBound &+ 8, as: UInt64.self))
            let m0: UInt64 = n >= 8 ? .max : (UInt64(1) &<< UInt64(n &* 8)) &- 1
            let m1: UInt64 = n >= 16 ? .max : n <= 8 ? 0 : (UInt64(1) &<< UInt64((n &- 8) &* 8)) &- 1
            return (w0 & m0, w1 & m1)
        }
        var w: (UInt64, UInt64) = (0, 0)
        for i in 0..<n {
            let b = UInt64(p[r.lowerBound + i]) << UInt64((i % 8) * 8)
            if i < 8 { w.0 |= b } else { w.1 |= b }
        }
        return w
    }

    @inline(__always)
    static func shortKey(_ p: UnsafeRawBufferPointer, _ a: Range<Int>, _ b: Range<Int>) -> ShortKey? {
        guard a.count <= 16 && b.count <= 16 else { return nil }
        let (a0, a1) = words(p, a), (b0, b1) = words(p, b)
        return ShortKey(a0: a0, a1: a1, b0: b0, b1: b1, lengths: UInt64(a.count) | UInt64(b.count) << 8)
    }

    /// The subject of the pair at `a` and `b`, if it was inserted before.
    @inline(__always)
    mutating func find(_ p: UnsafeRawBufferPointer, _ a: Range<Int>, _ b: Range<Int>) -> SubjectID? {
        guard let key = Self.shortKey(p, a, b) else { return findLong(p, a, b) }
        if key == lastKey { return lastSubject }
        let mask = shortSlots.count &- 1
        var i = Int(truncatingIfNeeded: key.hash) & mask
        while true {
            let k = Int(shortSlots[i])
            if k < 0 { return nil }
            if shortKeys[k] == key { lastKey = key; lastSubject = shortSubjects[k]; return lastSubject }
            i = (i &+ 1) & mask
        }
    }

    mutating func insert(_ p: UnsafeRawBufferPointer, _ a: Range<Int>, _ b: Range<Int>, _ subject: SubjectID) {
        guard let key = Self.shortKey(p, a, b) else { return insertLong(p, a, b, subject) }
        if 2 * (shortKeys.count + 1) > shortSlots.count {
            shortSlots = [Int32](repeating: -1, count: shortSlots.count * 2)
            for k in shortKeys.indices { Self.place(&shortSlots, shortKeys[k].hash, k) }
        }
        shortKeys.append(key)
        shortSubjects.append(subject)
        Self.place(&shortSlots, key.hash, shortKeys.count - 1)
        (lastKey, lastSubject) = (key, subject)
    }

    private static func place(_ slots: inout [Int32], _ h: UInt64, _ k: Int) {
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: h) & mask
        while slots[i] >= 0 { i = (i + 1) & mask }
        slots[i] = Int32(k)
    }

    private static func longHash(_ p: UnsafeRawBufferPointer, _ a: Range<Int>, _ b: Range<Int>) -> UInt64 {
        let h = mix(p, b, mix(p, a, 0xcbf2_9ce4_8422_2325))
        return h ^ (h &>> 32)
    }

    /// Eight bytes a step, then the tail a byte at a time.
    private static func mix(_ p: UnsafeRawBufferPointer, _ r: Range<Int>, _ h0: UInt64) -> UInt64 {
        var h = h0, i = r.lowerBound
        while i &+ 8 <= r.upperBound {
            h = (h ^ p.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0xFF51_AFD7_ED55_8CCD
            h ^= h &>> 29
            i &+= 8
        }
        while i < r.upperBound { h = (h ^ UInt64(p[i])) &* 0x100_0000_01b3; i &+= 1 }
        return (h ^ 0xff) &* 0xC4CE_B9FE_1A85_EC53
    }

    private static func same(_ p: UnsafeRawBufferPointer, _ x: Range<Int>, _ y: Range<Int>) -> Bool {
        x.count == y.count && memcmp(p.baseAddress! + x.lowerBound, p.baseAddress! + y.lowerBound, x.count) == 0
    }

    private func matchesLong(_ k: Int, _ p: UnsafeRawBufferPointer, _ a: Range<Int>, _ b: Range<Int>) -> Bool {
        Self.same(p, longEntries[k].first, a) && Self.same(p, longEntries[k].second, b)
    }

    private mutating func findLong(_ p: UnsafeRawBufferPointer, _ a: Range<Int>, _ b: Range<Int>) -> SubjectID? {
        if lastLong >= 0 && matchesLong(lastLong, p, a, b) { return longEntries[lastLong].subject }
        let h = Self.longHash(p, a, b)
        let mask = longSlots.count &- 1
        var i = Int(truncatingIfNeeded: h) & mask
        while longSlots[i] >= 0 {
            let k = Int(longSlots[i])
            if longEntries[k].hash == h && matchesLong(k, p, a, b) { lastLong = k; return longEntries[k].subject }
            i = (i &+ 1) & mask
        }
        return nil
    }

    private mutating func insertLong(_ p: UnsafeRawBufferPointer, _ a: Range<Int>, _ b: Range<Int>, _ subject: SubjectID) {
        if 2 * (longEntries.count + 1) > longSlots.count {
            longSlots = [Int32](repeating: -1, count: longSlots.count * 2)
            for k in longEntries.indices { Self.place(&longSlots, longEntries[k].hash, k) }
        }
        longEntries.append(LongEntry(hash: Self.longHash(p, a, b), first: a, second: b, subject: subject))
        lastLong = longEntries.count - 1
        Self.place(&longSlots, longEntries[lastLong].hash, lastLong)
    }
}

/// Eight bytes at a time, the first byte of the text in the low byte of the word (a little-endian load).
enum SWAR {
    static let ones: UInt64 = 0x0101_0101_0101_0101
    static let high: UInt64 = 0x8080_8080_8080_8080

    /// The high bit of each byte of `w` equal to `byte`, and no other bit (exact: no borrow between bytes).
    @inline(__always)
    static func matches(_ w: UInt64, _ byte: UInt8) -> UInt64 {
        let t = w ^ (ones &* UInt64(byte))
        return ~(((t & ~high) &+ ~high) | t | ~high)
    }

    /// Whether every byte of `w` is an ASCII digit.
    @inline(__always)
    static func areEightDigits(_ w: UInt64) -> Bool {
        let nibbles: UInt64 = 0xF0F0_F0F0_F0F0_F0F0, zeros: UInt64 = 0x3030_3030_3030_3030
        return w & nibbles == zeros && (w &+ 0x0606_0606_0606_0606) & nibbles == zeros
    }

    /// The value of eight ASCII digits, the first the most significant (Lemire's three multiplies).
    @inline(__always)
    static func eightDigits(_ w: UInt64) -> UInt64 {
        // (Swift's shifts bind tighter than its multiplies: every product is parenthesized.)
        var v = ((w & 0x0F0F_0F0F_0F0F_0F0F) &* 2561) &>> 8
        v = ((v & 0x00FF_00FF_00FF_00FF) &* 6_553_601) &>> 16
        return ((v & 0x0000_FFFF_0000_FFFF) &* 42_949_672_960_001) &>> 32
    }
}
