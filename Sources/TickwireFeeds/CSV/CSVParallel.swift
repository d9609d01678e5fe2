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
/// Entries point at the pair's first occurrence in the file, which stays mapped for the whole parse.
struct SubjectsByBytes {
    private struct Entry { var hash: UInt64; var first: Range<Int>; var second: Range<Int>; var subject: SubjectID }
    private var slots = [Int32](repeating: -1, count: 256)
    private var entries: [Entry] = []
    /// The previous row's entry: most files repeat a pair row after row.
    private var last = -1

    @inline(__always)
    private static func hash(_ p: UnsafeRawBufferPointer, _ a: Range<Int>, _ b: Range<Int>) -> UInt64 {
        let h = mix(p, b, mix(p, a, 0xcbf2_9ce4_8422_2325))
        return h ^ (h &>> 32)
    }

    @inline(__always)
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

    @inline(__always)
    private static func same(_ p: UnsafeRawBufferPointer, _ x: Range<Int>, _ y: Range<Int>) -> Bool {
        x.count == y.count && memcmp(p.baseAddress! + x.lowerBound, p.baseAddress! + y.lowerBound, x.count) == 0
    }

    @inline(__always)
    private func matches(_ k: Int, _ p: UnsafeRawBufferPointer, _ a: Range<Int>, _ b: Range<Int>) -> Bool {
        let e = entries[k]
        return Self.same(p, e.first, a) && Self.same(p, e.second, b)
    }

    /// The subject of the pair at `a` and `b`, if it was inserted before.
    @inline(__always)
    mutating func find(_ p: UnsafeRawBufferPointer, _ a: Range<Int>, _ b: Range<Int>) -> SubjectID? {
        if last >= 0 && matches(last, p, a, b) { return entries[last].subject }
        let h = Self.hash(p, a, b)
        let mask = slots.count &- 1
        var i = Int(truncatingIfNeeded: h) & mask
        while slots[i] >= 0 {
            let k = Int(slots[i])
            if entries[k].hash == h && matches(k, p, a, b) { last = k; return entries[k].subject }
            i = (i &+ 1) & mask
        }
        return nil
    }

    mutating func insert(_ p: UnsafeRawBufferPointer, _ a: Range<Int>, _ b: Range<Int>, _ subject: SubjectID) {
        if 2 * (entries.count + 1) > slots.count {
            slots = [Int32](repeating: -1, count: slots.count * 2)
            for k in entries.indices { place(entries[k].hash, k) }
        }
        entries.append(Entry(hash: Self.hash(p, a, b), first: a, second: b, subject: subject))
        last = entries.count - 1
        place(entries[last].hash, last)
    }

    private mutating func place(_ h: UInt64, _ k: Int) {
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: h) & mask
        while slots[i] >= 0 { i = (i + 1) & mask }
        slots[i] = Int32(k)
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
