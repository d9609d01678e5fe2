#if canImport(Glibc)
import Glibc
#endif
import CTickwireSys
import Synchronization
import TickwireCore

/// One reader of a `BroadcastRing`, with its own cursor and counters.
///
/// `poll` is called from one thread at a time (the consumer's); `counters` from any thread. Dropping the last
/// reference detaches it like `BroadcastRing.removeConsumer`.
public final class RingConsumer: @unchecked Sendable {
    public let name: String
    public let policy: ConsumerPolicy
    public let wait: WaitStrategy
    @usableFromInline let ring: BroadcastRing
    @usableFromInline let cell: Int
    /// The next sequence to hand over. Touched by the polling thread only (hence no dynamic exclusivity check:
    /// it was a runtime call, `swift_beginAccess`, on every poll).
    @exclusivity(unchecked) @usableFromInline var next: UInt64
    @usableFromInline let detached = Atomic<Bool>(false)
    /// The ring's control words, its slots and this consumer's cell, taken once (the ring keeps them alive).
    /// Reaching them through `ring.control` retained and released the words' owner on every poll: a write to
    /// the cache line the producer reads on every publish (busy-spin hop p50 165 → 105 ns, p99 710 → 295 ns in
    /// the same minutes; BENCHMARKS.md).
    @usableFromInline let control: AtomicWordsView
    @usableFromInline let slots: AtomicWordsView
    @usableFromInline let cellWords: AtomicWordsView
    /// The ring's constants the poll path needs, copied so that a poll reads nothing of the ring object: a line
    /// shared with whatever the producer writes there would be invalidated under it once a batch.
    @usableFromInline let mask: UInt64
    @usableFromInline let capacity: UInt64
    @usableFromInline let asymmetricFences: Bool

    init(ring: BroadcastRing, cell: Int, name: String, policy: ConsumerPolicy, wait: WaitStrategy, next: UInt64) {
        self.ring = ring; self.cell = cell; self.name = name; self.policy = policy; self.wait = wait; self.next = next
        control = ring.control.view
        slots = ring.slots.view
        cellWords = AtomicWordsView(base: ring.control[ring.cellWord(cell, 0)])
        mask = ring.mask
        capacity = UInt64(ring.capacity)
        asymmetricFences = ring.asymmetricFences
    }

    deinit {
        detach()
        ring.release(cell: cell)
    }

    func detach() {
        if !detached.exchange(true, ordering: .acquiringAndReleasing) { ring.deactivate(cell: cell) }
    }

    /// What this consumer has seen and cost so far.
    public var counters: ConsumerCounters { ring.counters(cell: cell) }

    /// The next sequence `poll` will hand over.
    public var nextSequence: UInt64 { next }

    @inlinable @inline(__always)
    func word(_ field: Int) -> UnsafeMutablePointer<Atomic<UInt64>> { cellWords[field] }

    @inlinable @inline(__always)
    func slot(_ sequence: UInt64) -> UnsafeMutablePointer<Atomic<UInt64>> { slots.eventSlot(sequence, mask: mask) }

    /// Waits, per the consumer's wait strategy, up to `timeoutNanos` (nil: until an event arrives or the ring
    /// closes), then hands each available event, at most `maxBatch`, to `body` in sequence order, stamped with
    /// its sequence (the slot's own `seq` word is not relied on: a batch filled in place leaves it unwritten).
    ///
    /// A lossy consumer that was lapped first receives one GAP event (kind `.gap`, subject `gapSubject`, scope
    /// `.publisher`, `a` the first lost sequence, `b` the last, `seq` 0), then the last-value cache's entries
    /// as they stood at the last lost sequence, all in this one call whatever `maxBatch` says; it continues with
    /// the sequence after the gap. A cache entry the producer rewrote after that point is not sent: its newer
    /// event follows in the stream.
    /// - Returns: the number of events handed over (0 on timeout), or -1 once the ring is closed and drained or
    ///   the consumer removed.
    /// - Complexity: O(events handed over); no allocation, no lock.
    @inlinable
    public func poll(maxBatch: Int, timeoutNanos: Int64?, _ body: (Event) -> Void) -> Int {
        precondition(maxBatch > 0, "maxBatch must be positive")
        if detached.load(ordering: .relaxed) { return -1 }
        var available = control[BroadcastRing.publishedWord].pointee.load(ordering: .acquiring)
        if available < next {
            guard let a = awaitEvents(timeoutNanos: timeoutNanos) else { return 0 }
            available = a
            if available < next { return -1 }
        }
        let last = Swift.min(available, next &+ UInt64(maxBatch - 1))
        var s = next
        if policy == .lossy {
            while s <= last {
                var e = slot(s).loadEvent()
                e.seq = s
                // The copy is good only if no producer had claimed the sequence that reuses the slot.
                atomicMemoryFence(ordering: .acquiring)
                if control[BroadcastRing.claimedWord].pointee.load(ordering: .relaxed) >= s &+ capacity {
                    let handed = Int(s &- next)
                    next = s
                    finishBatch(handed: handed, upTo: s &- 1)
                    return handed + resync(body)
                }
                body(e)
                s &+= 1
            }
        } else {
            while s <= last {
                var e = slot(s).loadEvent()
                e.seq = s
                body(e)
                s &+= 1
            }
        }
        let handed = Int(s &- next)
        next = s
        finishBatch(handed: handed, upTo: last)
        return handed
    }

    @inlinable @inline(__always)
    func finishBatch(handed: Int, upTo last: UInt64) {
        let delivered = word(BroadcastRing.cellDelivered)
        delivered.pointee.store(delivered.pointee.load(ordering: .relaxed) &+ UInt64(handed), ordering: .relaxed)
        if policy == .lossy {
            word(BroadcastRing.cellCursor).pointee.store(last, ordering: .relaxed)
            return
        }
        // Pairs with a parking producer (store waiting flag, barrier, load cursor); as in `endWrite`, a plain
        // store when the producer's membarrier supplies the barrier.
        if asymmetricFences {
            word(BroadcastRing.cellCursor).pointee.store(last, ordering: .releasing)
            #if DEBUG
            ring.failPoint?(.cursorStored)
            #endif
            atomicMemoryFence(ordering: .acquiringAndReleasing)
            if word(BroadcastRing.cellProducerWaiting).pointee.load(ordering: .relaxed) != 0 { wakeProducer() }
            return
        }
        word(BroadcastRing.cellCursor).pointee.store(last, ordering: .sequentiallyConsistent)
        #if DEBUG
        ring.failPoint?(.cursorStored)
        #endif
        if word(BroadcastRing.cellProducerWaiting).pointee.load(ordering: .sequentiallyConsistent) != 0 {
            wakeProducer()
        }
    }

    /// The producer counts itself out when it wakes: this only reads the count (see `awaitGateSlowly`).
    @usableFromInline
    func wakeProducer() {
        _ = tw_futex_wake(cellWords.futexWord(BroadcastRing.cellCursor), Int32.max)
    }

    /// Hands over the GAP for `next...head` and the cache entries as of `head`; moves on to `head + 1`.
    @usableFromInline
    func resync(_ body: (Event) -> Void) -> Int {
        let head = Swift.max(ring.publishedSequence, next)
        let first = next
        let now = Nanos.now()
        body(Event.gap(ring.gapSubject, first: first, last: head, scope: .publisher, eventTime: now, knownTime: now))
        var handed = 1
        ring.lastValues?.forEachEntry(upTo: head) { e in
            body(e)
            handed += 1
        }
        next = head &+ 1
        let dropped = word(BroadcastRing.cellDropped), resyncs = word(BroadcastRing.cellResyncs)
        dropped.pointee.store(dropped.pointee.load(ordering: .relaxed) &+ (head &- first &+ 1), ordering: .relaxed)
        resyncs.pointee.store(resyncs.pointee.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
        finishBatch(handed: handed, upTo: head)
        return handed
    }

    /// Waits for `next` to be published. Returns the published sequence (below `next` when the ring closed or
    /// the consumer was removed), or nil on timeout.
    @usableFromInline
    func awaitEvents(timeoutNanos: Int64?) -> UInt64? {
        let deadline = timeoutNanos.map { monotonicNanos() &+ Swift.max(0, $0) }
        var spins = 0
        while true {
            let p = control[BroadcastRing.publishedWord].pointee.load(ordering: .acquiring)
            if p >= next { return p }
            if detached.load(ordering: .relaxed) { return next &- 1 }
            if control[BroadcastRing.closedWord].pointee.load(ordering: .acquiring) != 0 {
                // Closed: whatever was published before the close is visible now.
                let final = control[BroadcastRing.publishedWord].pointee.load(ordering: .acquiring)
                return final >= next ? final : next &- 1
            }
            if timeoutNanos == 0 { return nil }
            spins += 1
            // The clock is read every 64 spins, and before each sleep (a parked wait may have slept to the deadline).
            let sleepsNow: Bool
            switch wait {
            case .busySpin, .yield: sleepsNow = false
            case .park: sleepsNow = spins > spinsBeforeBlocking
            case .sleep: sleepsNow = true
            }
            if let deadline, spins & 63 == 0 || sleepsNow, monotonicNanos() >= deadline {
                return nil
            }
            switch wait {
            case .busySpin:
                relax()
            case .yield:
                if spins < spinsBeforeBlocking { relax() } else { yieldThread() }
            case .park:
                if spins < spinsBeforeBlocking { relax(); continue }
                park(deadline: deadline)
            case .sleep(let nanos):
                nap(nanos, deadline: deadline)
            }
        }
    }

    /// Sleeps on the nap epoch for at most `nanos` without counting as parked: the producer never wakes this
    /// consumer for an event, not even when it wakes parked consumers beside it; only `close` and `removeConsumer`
    /// do (they bump the nap epoch for everyone).
    private func nap(_ nanos: Int64, deadline: Int64?) {
        // The epoch before the checks: a close or removal after them moves it, and the wait returns at once.
        let epoch = control[BroadcastRing.napEpochWord].pointee.load(ordering: .acquiring)
        if control[BroadcastRing.closedWord].pointee.load(ordering: .acquiring) != 0 || detached.load(ordering: .acquiring) { return }
        var timeout = Swift.max(1_000, nanos)
        if let deadline { timeout = Swift.min(timeout, Swift.max(0, deadline &- monotonicNanos())) }
        _ = tw_futex_wait(control.futexWord(BroadcastRing.napEpochWord), UInt32(truncatingIfNeeded: epoch), timeout)
    }

    private func park(deadline: Int64?) {
        // The epoch before the registration: a wake that takes this registration moves the epoch after it, so the
        // wait below cannot sleep through it. Read after the registration, as it once was, the epoch could already
        // be the one moved by a wake for an event this consumer had read: that wake took the registration, the
        // consumer slept on the new epoch, and no later publish woke it (both consumers of a ring asleep, the
        // producer gated on them: a hang seen in CI; `parkedSidesNeverSleepThroughAWake`).
        let epoch = control[BroadcastRing.wakeEpochWord].pointee.load(ordering: .sequentiallyConsistent)
        control[BroadcastRing.parkedWord].pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
        if asymmetricFences { tw_membarrier() }
        #if DEBUG
        ring.failPoint?(.consumerRegistered)
        #endif
        if control[BroadcastRing.publishedWord].pointee.load(ordering: .sequentiallyConsistent) >= next
            || control[BroadcastRing.closedWord].pointee.load(ordering: .sequentiallyConsistent) != 0
            || detached.load(ordering: .sequentiallyConsistent) {
            return
        }
        // A 100 ms backstop, as the producer's gate has one: the wake is exact, the timeout only bounds the cost of
        // a bug. A consumer that slept through a wake would otherwise never move its cursor, and a producer gated
        // on it never publish the event that wakes it (a hang seen once in CI, docs/NEXT.md).
        let backstop: Int64 = 100_000_000
        let timeout = deadline.map { Swift.min(backstop, Swift.max(0, $0 &- monotonicNanos())) } ?? backstop
        if tw_futex_wait(control.futexWord(BroadcastRing.wakeEpochWord), UInt32(truncatingIfNeeded: epoch), timeout) != 0
            && errno == ETIMEDOUT && timeout == backstop
            && control[BroadcastRing.publishedWord].pointee.load(ordering: .acquiring) >= next {
            control[BroadcastRing.missedWakesWord].pointee.wrappingAdd(1, ordering: .relaxed)
        }
    }
}
