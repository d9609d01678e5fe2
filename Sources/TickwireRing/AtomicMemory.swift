import CTickwireSys
import Synchronization
import TickwireCore

/// 64-bit atomics placed in raw memory aligned to 128 bytes, so that words two threads write sit on their own
/// cache lines (Swift cannot align a type to 64 bytes, so the block is allocated aligned and addressed by index).
///
/// The block owns its memory; `deinit` frees it. Words are addressed by index (8 bytes each), so a caller puts
/// a contended word at a multiple of `wordsPerLine`.
@usableFromInline
final class AtomicWords {
    /// Words per 128-byte line: two adjacent 64-byte lines, so the adjacent-line prefetcher does not couple them.
    @inlinable static var wordsPerLine: Int { 16 }

    @usableFromInline let base: UnsafeMutablePointer<Atomic<UInt64>>
    @usableFromInline let count: Int

    init(count: Int) {
        precondition(count > 0)
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: count * 8, alignment: 128)
        base = raw.bindMemory(to: Atomic<UInt64>.self, capacity: count)
        for i in 0..<count { (base + i).initialize(to: Atomic(0)) }
    }

    deinit {
        base.deinitialize(count: count)
        UnsafeMutableRawPointer(base).deallocate()
    }

    @inlinable @inline(__always)
    subscript(_ i: Int) -> UnsafeMutablePointer<Atomic<UInt64>> { view[i] }

    @inlinable @inline(__always)
    func futexWord(_ i: Int) -> UnsafeMutablePointer<UInt32> { view.futexWord(i) }

    /// The words without the object: for a thread that reaches them through another object (a consumer through
    /// its ring), so that it never retains this one. A retain and release is a write to this object's reference
    /// count, on the cache line that holds `base`, which the producer reads on every publish.
    @inlinable
    var view: AtomicWordsView { AtomicWordsView(base: base) }
}

/// `AtomicWords`' addressing over a borrowed base pointer; valid while its `AtomicWords` lives.
@usableFromInline @frozen
struct AtomicWordsView {
    @usableFromInline let base: UnsafeMutablePointer<Atomic<UInt64>>

    @inlinable init(base: UnsafeMutablePointer<Atomic<UInt64>>) { self.base = base }

    @inlinable @inline(__always)
    subscript(_ i: Int) -> UnsafeMutablePointer<Atomic<UInt64>> { base + i }

    /// The low 32 bits of word `i` as a futex word (little-endian: the word's first four bytes).
    @inlinable @inline(__always)
    func futexWord(_ i: Int) -> UnsafeMutablePointer<UInt32> {
        UnsafeMutableRawPointer(base + i).assumingMemoryBound(to: UInt32.self)
    }

    /// The eight words of the ring slot that holds `sequence` (`mask`: the ring's capacity − 1).
    @inlinable @inline(__always)
    func eventSlot(_ sequence: UInt64, mask: UInt64) -> UnsafeMutablePointer<Atomic<UInt64>> {
        base + Int(truncatingIfNeeded: (sequence & mask) &<< 3)
    }
}

/// An `Event` as eight machine words. Slots and cache entries hold events as relaxed atomic words: a lossy
/// reader may race a writer that laps it, and the seqlock-style check after the read decides whether the copy
/// is kept. Atomic words make that race defined behaviour (and keep ThreadSanitizer quiet) at the price of
/// eight scalar moves instead of a vector copy. While no such reader exists, a single producer's batches are
/// written into the slots in place instead (`BroadcastRing.fillInPlace`).
@usableFromInline
typealias EventWords = (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)

extension UnsafeMutablePointer where Pointee == Atomic<UInt64> {
    @inlinable @inline(__always)
    func storeEvent(_ event: Event) {
        let w = unsafeBitCast(event, to: EventWords.self)
        self[0].store(w.0, ordering: .relaxed); self[1].store(w.1, ordering: .relaxed)
        self[2].store(w.2, ordering: .relaxed); self[3].store(w.3, ordering: .relaxed)
        self[4].store(w.4, ordering: .relaxed); self[5].store(w.5, ordering: .relaxed)
        self[6].store(w.6, ordering: .relaxed); self[7].store(w.7, ordering: .relaxed)
    }

    @inlinable @inline(__always)
    func loadEvent() -> Event {
        let w: EventWords = (
            self[0].load(ordering: .relaxed), self[1].load(ordering: .relaxed),
            self[2].load(ordering: .relaxed), self[3].load(ordering: .relaxed),
            self[4].load(ordering: .relaxed), self[5].load(ordering: .relaxed),
            self[6].load(ordering: .relaxed), self[7].load(ordering: .relaxed))
        return unsafeBitCast(w, to: Event.self)
    }
}

/// Monotonic time in nanoseconds (CLOCK_MONOTONIC).
@inlinable @inline(__always)
func monotonicNanos() -> Int64 { tw_monotonic_ns() }
