import CTickwireSys
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import TickwireCore

/// A Disruptor-class broadcast ring: one stream of 64-byte events in, any number of consumers reading it, each
/// with its own cursor on its own cache line.
///
/// Slots are preallocated (a power of two, indexed by mask) and nothing on the publish or poll path allocates
/// or locks. A **lossy** consumer never holds the producer back: when the producer laps it, it receives a GAP
/// event naming exactly the lost sequences and the last-value cache's entries, then continues from the head.
/// A **blocking** consumer sees everything: the producer waits for it (per its wait strategy) when it is a full
/// ring behind, and counts the stall against it.
///
/// Sequences start at 1; `publishedSequence` is the highest sequence consumers may read.
///
/// Threads: `publish`, `publishBatch` and `publish(contentsOf:)` from the one producer thread (or several with
/// `.multi`, each claiming a whole batch with one fetch-add); each `RingConsumer.poll` from one thread at a time;
/// `addConsumer`, `removeConsumer`, `consumerStats`, counters and `close` from any thread.
public final class BroadcastRing: @unchecked Sendable {
    // MARK: Control block layout
    //
    // The control words, derived from one description: 64-bit words in 128-byte lines (`wordsPerLine` words; two
    // 64-byte cache lines, so the adjacent-line prefetcher does not couple them), each line written by one side.
    //
    //   line │ word      │ field             │ written by                        │ read by
    //  ══════╪═══════════╪═══════════════════╪═══════════════════════════════════╪══════════════════════════════
    //    0   │  0        │ published         │ the producer, once a publish      │ every consumer, spinning
    //  ──────┼───────────┼───────────────────┼───────────────────────────────────┼──────────────────────────────
    //    1   │ 16        │ parked            │ consumers about to sleep          │ the producer, once a publish
    //        │ 17        │ wakeEpoch (futex) │ the producer, waking them         │ parked consumers
    //        │ 18        │ napEpoch (futex)  │ close(), removeConsumer           │ napping (`.sleep`) consumers
    //        │ 19        │ missedWakes       │ a sleeper whose backstop found    │ stats, tests
    //        │           │                   │   what it waited for (a bug)      │
    //  ──────┼───────────┼───────────────────┼───────────────────────────────────┼──────────────────────────────
    //    2   │ 32        │ closed            │ close()                           │ consumers, when waiting
    //        │ 33        │ gatingEpoch       │ attaching/removing blocking ones  │ the producer, per publish
    //        │ 34        │ unguardedReaders  │ attaching/removing/releasing      │ the producer, per batch
    //  ──────┼───────────┼───────────────────┼───────────────────────────────────┼──────────────────────────────
    //    3   │ 48        │ gate              │ the producer (cached slowest      │ the producer
    //        │ 49        │ seenGatingEpoch   │   blocking cursor, and the epoch  │
    //        │ 50        │ stalls            │   it was computed at; its next    │ stats
    //        │ 51        │ next              │   sequence when `.single`)        │ the producer
    //  ──────┼───────────┼───────────────────┼───────────────────────────────────┼──────────────────────────────
    //    4   │ 64        │ claimed           │ the producer(s), before slots     │ lossy consumers, per event
    //  ══════╪═══════════╪═══════════════════╪═══════════════════════════════════╪══════════════════════════════
    //  5 + c │ 80 + 16c  │ consumer c's cell: cursor (a futex the producer may sleep on), state, producerWaiting,
    //        │  + 0…6    │ stalls, delivered, dropped, resyncs — written by consumer c (state, producerWaiting and
    //        │           │ stalls by the producer or an attaching/removing thread)
    //
    // `published` and `claimed` are apart so that a consumer spinning on `published` sees one store per batch,
    // not two. Nothing a publish writes is in the ring object itself: other threads read its fields, and a
    // producer store there (the next sequence was a stored property) invalidated a polling consumer's copy of
    // that line once a batch. `layoutIsValid` checks the rules the drawing shows (Swift has no static assertion,
    // so at the first ring); BroadcastRingTests checks the drawing itself. The words are @inlinable computed
    // constants: where publish and poll are inlined into another module they fold to the same immediates as
    // literals did.

    @inlinable static var wordsPerLine: Int { AtomicWords.wordsPerLine }
    @inlinable static func word(line: Int, field: Int) -> Int { line &* wordsPerLine &+ field }

    @inlinable static var publishedLine: Int { 0 }
    @inlinable static var parkingLine: Int { 1 }
    @inlinable static var membershipLine: Int { 2 }
    @inlinable static var gateLine: Int { 3 }
    @inlinable static var claimLine: Int { 4 }
    @inlinable static var firstCellLine: Int { 5 }

    @inlinable static var publishedWord: Int { word(line: publishedLine, field: 0) }
    @inlinable static var parkedWord: Int { word(line: parkingLine, field: 0) }
    @inlinable static var wakeEpochWord: Int { word(line: parkingLine, field: 1) }
    /// What `.sleep` consumers nap on: only `close` and `removeConsumer` move it. On `wakeEpoch` they were woken by
    /// every publish that woke a parked consumer beside them (the daemon's store writer and alerts, per event).
    @inlinable static var napEpochWord: Int { word(line: parkingLine, field: 2) }
    /// Sleeps that ran to their backstop although what they waited for had come: lost wake-ups, which the
    /// protocol rules out (counted so that a test can prove it, and an operator see it).
    @inlinable static var missedWakesWord: Int { word(line: parkingLine, field: 3) }
    @inlinable static var closedWord: Int { word(line: membershipLine, field: 0) }
    /// Bumped whenever the set of blocking consumers changes.
    @inlinable static var gatingEpochWord: Int { word(line: membershipLine, field: 1) }
    /// See `hasUnguardedReaders`.
    @inlinable static var unguardedReadersWord: Int { word(line: membershipLine, field: 2) }
    /// The producer's cached minimum blocking cursor.
    @inlinable static var gateWord: Int { word(line: gateLine, field: 0) }
    @inlinable static var seenGatingEpochWord: Int { word(line: gateLine, field: 1) }
    @inlinable static var stallsWord: Int { word(line: gateLine, field: 2) }
    /// Single producer only: the next sequence to publish.
    @inlinable static var nextWord: Int { word(line: gateLine, field: 3) }
    /// The highest sequence a producer may be writing (lossy consumers check it; `.multi` producers claim with it).
    @inlinable static var claimedWord: Int { word(line: claimLine, field: 0) }
    @inlinable static var firstCellWord: Int { word(line: firstCellLine, field: 0) }

    // A consumer cell: one line. Fields by offset from the cell's first word.
    /// The last sequence the consumer has finished with.
    @inlinable static var cellCursor: Int { 0 }
    /// 0 free, 1 lossy, 2 blocking.
    @inlinable static var cellState: Int { 1 }
    /// How many producers sleep on this cell's cursor: each counts itself in and out (never reset, so a cell
    /// reused under a producer still counting itself out stays balanced).
    @inlinable static var cellProducerWaiting: Int { 2 }
    @inlinable static var cellStalls: Int { 3 }
    @inlinable static var cellDelivered: Int { 4 }
    @inlinable static var cellDropped: Int { 5 }
    @inlinable static var cellResyncs: Int { 6 }
    @usableFromInline static let stateLossy: UInt64 = 1
    @usableFromInline static let stateBlocking: UInt64 = 2

    /// Every field of the drawing above, by line (a cell's fields on the first cell's line).
    static let layout: [(name: String, line: Int, word: Int)] = shared + cell
    private static let shared: [(name: String, line: Int, word: Int)] = [
        ("published", publishedLine, publishedWord),
        ("parked", parkingLine, parkedWord), ("wakeEpoch", parkingLine, wakeEpochWord),
        ("napEpoch", parkingLine, napEpochWord), ("missedWakes", parkingLine, missedWakesWord),
        ("closed", membershipLine, closedWord), ("gatingEpoch", membershipLine, gatingEpochWord),
        ("unguardedReaders", membershipLine, unguardedReadersWord),
        ("gate", gateLine, gateWord), ("seenGatingEpoch", gateLine, seenGatingEpochWord), ("stalls", gateLine, stallsWord),
        ("next", gateLine, nextWord),
        ("claimed", claimLine, claimedWord),
    ]
    private static let cellFields: [(name: String, field: Int)] = [
        ("cursor", cellCursor), ("state", cellState), ("producerWaiting", cellProducerWaiting), ("stalls", cellStalls),
        ("delivered", cellDelivered), ("dropped", cellDropped), ("resyncs", cellResyncs),
    ]
    private static let cell: [(name: String, line: Int, word: Int)] = cellFields.map {
        (name: "cell." + $0.name, line: firstCellLine, word: firstCellWord + $0.field)
    }

    /// The rules of the layout, checked once (at the first ring) since Swift has no static assertions: each word
    /// on its own line's words, no two fields on one word, the cells after every shared line, and the words the
    /// producer writes on every publish (`published`, `claimed`) on lines of their own.
    static let layoutIsValid: Bool = {
        var seen = Set<Int>()
        for f in layout {
            precondition(f.word / wordsPerLine == f.line && f.word >= 0, "ring layout: \(f.name) (word \(f.word)) is not on line \(f.line)")
            precondition(seen.insert(f.word).inserted, "ring layout: \(f.name) shares word \(f.word)")
            precondition(f.line <= firstCellLine, "ring layout: \(f.name) is past the first cell")
            if !f.name.hasPrefix("cell.") { precondition(f.line < firstCellLine, "ring layout: \(f.name) is on a cell's line") }
        }
        for hot in [publishedLine, claimLine] {
            precondition(layout.filter { $0.line == hot }.count == 1, "ring layout: line \(hot) is shared")
        }
        precondition(wordsPerLine * 8 == 128, "ring layout: lines are 128 bytes")
        return true
    }()

    /// How many slots; a power of two.
    public let capacity: Int
    @usableFromInline let mask: UInt64
    /// The most events one `publishBatch` call takes (half the ring, at most 256).
    public let maxPublishBatch: Int
    public let producerMode: ProducerMode
    /// How the producer waits for a blocking consumer that is a full ring behind.
    public let producerWait: WaitStrategy
    /// The subject GAP events carry.
    public let gapSubject: SubjectID
    /// Updated with every TRADE, QUOTE and STATUS before it is published; the source of lossy resyncs.
    public let lastValues: LastValueCache?
    /// The most consumers attached at once.
    public let maxConsumers: Int
    /// Whether the sleep/wake handshakes use asymmetric fences (membarrier): the side that publishes or frees a
    /// slot then makes a plain release store, and only a side about to sleep pays for a full barrier on every
    /// thread. Without membarrier, both sides use sequentially consistent operations.
    @usableFromInline let asymmetricFences: Bool

    @usableFromInline let control: AtomicWords
    @usableFromInline let slots: AtomicWords
    /// The single producer's staging area for a `publishBatch` that cannot be filled in place (multi-producer
    /// batches stage on the stack).
    @usableFromInline let staging: UnsafeMutablePointer<Event>
    /// Single producer only: the next sequence to publish (word `nextWord`, relaxed: one thread reads and
    /// writes it).
    @inlinable var nextSequence: UInt64 {
        get { control[BroadcastRing.nextWord].pointee.load(ordering: .relaxed) }
        set { control[BroadcastRing.nextWord].pointee.store(newValue, ordering: .relaxed) }
    }

    private struct Registry {
        var names: [String?]
        var policies: [ConsumerPolicy?]
        var free: [Int]
        var highWater = 0
    }
    private let registry: Locked<Registry>
    private let cellHighWater = Atomic<Int>(0)

    /// - Parameters:
    ///   - capacity: slots, rounded up to a power of two (at least 2).
    ///   - producers: `.single` unless several threads publish.
    ///   - gapSubject: the subject of GAP events handed to lapped lossy consumers.
    ///   - lastValues: the cache lapped lossy consumers resynchronise from; the ring updates it.
    ///   - producerWait: how the producer waits for blocking consumers.
    ///   - maxConsumers: consumer cells preallocated.
    ///   - asymmetricFences: use membarrier where the platform has it (see `asymmetricFences`). Right when sleeps
    ///     are rare next to publishes; turn it off when a parking consumer keeps catching up with a slower
    ///     producer (the daemon's publisher behind a network source): every park then interrupts each CPU running
    ///     the process, a VM exit on a virtual machine, and that costs more than a locked store per publish.
    public init(capacity: Int, producers: ProducerMode = .single, gapSubject: SubjectID,
                lastValues: LastValueCache? = nil, producerWait: WaitStrategy = .park, maxConsumers: Int = 256,
                asymmetricFences: Bool = true) {
        precondition(capacity >= 2 && capacity <= 1 << 30, "ring capacity \(capacity) is out of range 2...2^30")
        precondition(maxConsumers > 0)
        var cap = 2
        while cap < capacity { cap <<= 1 }
        self.capacity = cap
        self.mask = UInt64(cap - 1)
        self.maxPublishBatch = Swift.min(256, cap / 2)
        self.producerMode = producers
        self.producerWait = producerWait
        self.gapSubject = gapSubject
        self.lastValues = lastValues
        self.maxConsumers = maxConsumers
        self.asymmetricFences = asymmetricFences && membarrierAvailable
        precondition(MemoryLayout<Event>.size == 64 && MemoryLayout<Event>.stride == 64, "Event must be 64 bytes")
        precondition(BroadcastRing.layoutIsValid)
        control = AtomicWords(count: BroadcastRing.firstCellWord + maxConsumers * BroadcastRing.wordsPerLine)
        slots = AtomicWords(count: cap * 8)
        staging = .allocate(capacity: maxPublishBatch)
        staging.initialize(repeating: .empty, count: maxPublishBatch)
        control[BroadcastRing.gateWord].pointee.store(UInt64.max, ordering: .relaxed)
        control[BroadcastRing.nextWord].pointee.store(1, ordering: .relaxed)
        registry = Locked(Registry(names: Array(repeating: nil, count: maxConsumers),
                                  policies: Array(repeating: nil, count: maxConsumers),
                                  free: Array((0..<maxConsumers).reversed())))
    }

    deinit { staging.deallocate() }

    // MARK: - Publishing

    /// The highest published sequence (0 before the first event).
    public var publishedSequence: UInt64 { control[BroadcastRing.publishedWord].pointee.load(ordering: .acquiring) }

    /// How many times the producer had to wait for a blocking consumer.
    public var producerStalls: UInt64 { control[BroadcastRing.stallsWord].pointee.load(ordering: .relaxed) }

    /// Sleeps, by a parked consumer or the producer, that ran to their backstop although what they waited for had
    /// come: lost wake-ups. Zero unless the wake protocol has a bug; each one cost the sleeper its backstop.
    public var missedWakes: UInt64 { control[BroadcastRing.missedWakesWord].pointee.load(ordering: .relaxed) }

    /// Whether `close()` was called.
    public var isClosed: Bool { control[BroadcastRing.closedWord].pointee.load(ordering: .acquiring) != 0 }

    /// Stamps `event.seq` with the next ring sequence (the first is 1), stores it, updates the last-value cache
    /// for TRADE, QUOTE and STATUS, and publishes it.
    ///
    /// Waits, per `producerWait`, only while a blocking consumer is a full ring behind.
    /// - Returns: the sequence assigned.
    /// - Complexity: O(1); no allocation, no lock; one fenced store to publish.
    @inlinable @discardableResult
    public func publish(_ event: Event) -> UInt64 {
        var e = event
        if producerMode == .single {
            let s = nextSequence
            nextSequence = s &+ 1
            beginWrite(upTo: s)
            e.seq = s
            slot(s).storeEvent(e)
            lastValues?.update(e)
            endWrite(upTo: s)
            return s
        }
        let s = control[BroadcastRing.claimedWord].pointee.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue
        awaitGate(s)
        atomicMemoryFence(ordering: .releasing)
        e.seq = s
        slot(s).storeEvent(e)
        awaitTurn(s)
        lastValues?.update(e)
        endWrite(upTo: s)
        return s
    }

    /// Claims up to `count` slots (at most `maxPublishBatch`), lets `fill` write the events into a buffer of
    /// that many, then publishes them together under consecutive sequences (consumers receive them stamped):
    /// one fenced store for the batch.
    ///
    /// `fill` must initialize every element of the buffer it receives. A single producer with no lossy consumer
    /// attached hands `fill` the claimed slots themselves, after waiting for blocking consumers to free them;
    /// otherwise (a lossy reader may be copying those slots, or the batch would wrap past the ring's end) it
    /// fills a preallocated staging buffer that is then stored into the slots word by word. Either way `fill`
    /// runs after any wait for blocking consumers. With `.multi` each call stages on the stack
    /// (`withUnsafeTemporaryAllocation`).
    /// - Returns: how many events were published.
    /// - warning: the buffer is valid only inside `fill`.
    @inlinable @discardableResult
    public func publishBatch(count: Int, _ fill: (UnsafeMutableBufferPointer<Event>) -> Void) -> Int {
        let n = Swift.min(count, maxPublishBatch)
        guard n > 0 else { return 0 }
        if producerMode == .single {
            let first = nextSequence
            let last = first &+ UInt64(n - 1)
            nextSequence = last &+ 1
            beginWrite(upTo: last)
            if (first & mask) &+ UInt64(n) <= UInt64(capacity) && !hasUnguardedReaders {
                fillInPlace(first: first, count: n, fill)
            } else {
                let buffer = UnsafeMutableBufferPointer(start: staging, count: n)
                fill(buffer)
                writeBatch(buffer, first: first)
            }
            endWrite(upTo: last)
            return n
        }
        return withUnsafeTemporaryAllocation(of: Event.self, capacity: n) { buffer in
            fill(buffer)
            return publishClaiming(UnsafeBufferPointer(buffer))
        }
    }

    /// Publishes the first events of `events` (at most `maxPublishBatch`) in order, as `publishBatch` does:
    /// one claim, one publishing store and at most one wake-up for all of them. For a producer that collects its
    /// events before it publishes them (`RingSink`); with `.multi` they go from `events` to the slots with no
    /// staging copy.
    /// - Returns: how many events were published.
    @inlinable @discardableResult
    public func publish(contentsOf events: UnsafeBufferPointer<Event>) -> Int {
        let n = Swift.min(events.count, maxPublishBatch)
        guard n > 0, let from = events.baseAddress else { return 0 }
        if producerMode == .single {
            return publishBatch(count: n) { $0.baseAddress!.update(from: from, count: n) }
        }
        return publishClaiming(UnsafeBufferPointer(start: from, count: n))
    }

    /// `.multi`: claims `buffer.count` slots with one fetch-add, stores the events stamped, waits until every
    /// earlier claim is published, then publishes them with one store.
    @inlinable
    func publishClaiming(_ buffer: UnsafeBufferPointer<Event>) -> Int {
        let n = buffer.count
        let last = control[BroadcastRing.claimedWord].pointee.wrappingAdd(UInt64(n), ordering: .acquiringAndReleasing).newValue
        let first = last &- UInt64(n - 1)
        awaitGate(last)
        atomicMemoryFence(ordering: .releasing)
        for i in 0..<n {
            var e = buffer[i]
            e.seq = first &+ UInt64(i)
            slot(e.seq).storeEvent(e)
        }
        awaitTurn(first)
        if let lvc = lastValues {
            for i in 0..<n { var e = buffer[i]; e.seq = first &+ UInt64(i); lvc.update(e) }
        }
        endWrite(upTo: last)
        return n
    }

    /// Whether a reader the producer does not wait for may be copying slots, so they must be stored as atomic
    /// words: a lossy consumer, or a blocking one removed while a poll on another thread may still be copying.
    /// Each is counted from then until its cell is released (after its last poll). Read after the gate wait.
    ///
    /// Pairs with `addConsumer(policy: .lossy)` (count, barrier, then read the start): either that read sees
    /// every batch this thread filled in place after seeing no count, or this load sees the count; such a batch
    /// ends at most `maxPublishBatch` past the consumer's start, so it never rewrites a slot the consumer will
    /// copy. The barrier on this side is the previous publishing store: sequentially consistent, or (asymmetric
    /// fences) the attaching thread's membarrier. With `deactivate`, which counts a blocking cell before it
    /// stops gating: a gate scan that no longer sees the cell is followed by this load, which sees the count.
    @inlinable @inline(__always)
    var hasUnguardedReaders: Bool {
        control[BroadcastRing.unguardedReadersWord].pointee.load(ordering: .sequentiallyConsistent) != 0
    }

    /// Single producer, no unguarded reader, slots `first..<first + n` contiguous and claimed: `fill` writes the
    /// events straight into the slots, with no staging copy and plain (vector) stores. Blocking consumers read
    /// a slot only after the release store that publishes it, and the producer rewrites it only after their
    /// cursors (released after the read) pass it, so no access to these slots races.
    ///
    /// The slots' `seq` words are left as `fill` wrote them: a consumer stamps each event with the sequence of
    /// the slot it read (`RingConsumer.poll`), so stamping them here was a second pass over the batch's lines
    /// for nothing. The last-value cache gets stamped copies.
    @inlinable @inline(__always)
    func fillInPlace(first: UInt64, count n: Int, _ fill: (UnsafeMutableBufferPointer<Event>) -> Void) {
        slot(first).withMemoryRebound(to: Event.self, capacity: n) { events in
            let buffer = UnsafeMutableBufferPointer(start: events, count: n)
            fill(buffer)
            guard let lvc = lastValues else { return }
            var s = first
            for i in 0..<n {
                var e = buffer[i]
                e.seq = s
                lvc.update(e)
                s &+= 1
            }
        }
    }

    @inlinable @inline(__always)
    func writeBatch(_ buffer: UnsafeMutableBufferPointer<Event>, first: UInt64) {
        var s = first
        if let lvc = lastValues {
            for i in 0..<buffer.count {
                var e = buffer[i]; e.seq = s
                slot(s).storeEvent(e)
                lvc.update(e)
                s &+= 1
            }
        } else {
            for i in 0..<buffer.count {
                var e = buffer[i]; e.seq = s
                slot(s).storeEvent(e)
                s &+= 1
            }
        }
    }

    @inlinable @inline(__always)
    func slot(_ sequence: UInt64) -> UnsafeMutablePointer<Atomic<UInt64>> { slots.view.eventSlot(sequence, mask: mask) }

    /// Single producer, before writing slots up to `last`: waits for blocking consumers, then announces the claim
    /// so a lossy reader can tell whether the slot it just copied may have been overwritten meanwhile.
    @inlinable @inline(__always)
    func beginWrite(upTo last: UInt64) {
        awaitGate(last)
        control[BroadcastRing.claimedWord].pointee.store(last, ordering: .relaxed)
        // Orders the claim before the slot stores: a reader that sees a new slot word then sees the claim.
        atomicMemoryFence(ordering: .releasing)
    }

    /// Publishes up to `last` and wakes parked consumers if any may be asleep.
    @inlinable @inline(__always)
    func endWrite(upTo last: UInt64) {
        // Pairs with a parking consumer's registration (store parked, barrier, load published), so either the
        // consumer sees this sequence or this thread sees it parked. With asymmetric fences the consumer's
        // membarrier supplies the full barrier on this side too, so this is a plain store: no locked
        // instruction, no store-buffer drain per publish.
        if asymmetricFences {
            control[BroadcastRing.publishedWord].pointee.store(last, ordering: .releasing)
            atomicMemoryFence(ordering: .acquiringAndReleasing)   // keeps the load below after the store (compiler)
            if control[BroadcastRing.parkedWord].pointee.load(ordering: .relaxed) != 0 { wakeConsumers() }
            return
        }
        control[BroadcastRing.publishedWord].pointee.store(last, ordering: .sequentiallyConsistent)
        if control[BroadcastRing.parkedWord].pointee.load(ordering: .sequentiallyConsistent) != 0 {
            wakeConsumers()
        }
    }

    #if DEBUG
    /// Tests only: a pause run at each point where a sleeper and its waker race (a side registered as asleep, a
    /// side about to look for sleepers, a wake starting), to widen the windows a lost wake-up needs (a fail point,
    /// as FoundationDB's BUGGIFY). Set before the ring's threads start; compiled out of release builds.
    @usableFromInline var failPoint: ((FailPoint) -> Void)?

    /// Where `failPoint` runs.
    @usableFromInline enum FailPoint: Sendable {
        /// The producer, before it takes the parked consumers' registrations.
        case wakingConsumers
        /// A consumer, registered as parked, before it looks again.
        case consumerRegistered
        /// A consumer, its cursor stored, before it looks for a waiting producer.
        case cursorStored
        /// The producer, counted as waiting on a cursor, before it looks again.
        case producerRegistered
    }
    #endif

    @usableFromInline
    func wakeConsumers() {
        #if DEBUG
        failPoint?(.wakingConsumers)
        #endif
        guard control[BroadcastRing.parkedWord].pointee.exchange(0, ordering: .sequentiallyConsistent) != 0 else { return }
        control[BroadcastRing.wakeEpochWord].pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
        _ = tw_futex_wake(control.futexWord(BroadcastRing.wakeEpochWord), Int32.max)
    }

    /// Wakes the napping (`.sleep`) consumers: for `close` and `removeConsumer` only, never for an event.
    func wakeNappers() {
        control[BroadcastRing.napEpochWord].pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
        _ = tw_futex_wake(control.futexWord(BroadcastRing.napEpochWord), Int32.max)
    }

    /// Multi-producer: waits until every earlier claim is published, so sequences become visible in order.
    @usableFromInline
    func awaitTurn(_ first: UInt64) {
        var spins = 0
        while control[BroadcastRing.publishedWord].pointee.load(ordering: .acquiring) != first &- 1 {
            spins += 1
            if spins < spinsBeforeBlocking { relax() } else { yieldThread() }
        }
    }

    /// Before writing sequence `last`: returns at once unless a blocking consumer may still need the slot
    /// `last - capacity`; then rescans the blocking cursors and waits for the slowest.
    @inlinable @inline(__always)
    func awaitGate(_ last: UInt64) {
        let epoch = control[BroadcastRing.gatingEpochWord].pointee.load(ordering: .sequentiallyConsistent)
        let gate = control[BroadcastRing.gateWord].pointee.load(ordering: .relaxed)
        if epoch == control[BroadcastRing.seenGatingEpochWord].pointee.load(ordering: .relaxed)
            && (gate == UInt64.max || last <= gate &+ UInt64(capacity)) {
            return
        }
        awaitGateSlowly(last)
    }

    @usableFromInline
    func awaitGateSlowly(_ last: UInt64) {
        var stalled = false
        var spins = 0
        while true {
            let epoch = control[BroadcastRing.gatingEpochWord].pointee.load(ordering: .sequentiallyConsistent)
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            var slowest = UInt64.max
            var slowestCell = -1
            for cell in 0..<cellHighWater.load(ordering: .acquiring) {
                let w = cellWord(cell, 0)
                guard control[w + BroadcastRing.cellState].pointee.load(ordering: .sequentiallyConsistent) == BroadcastRing.stateBlocking
                else { continue }
                let c = control[w + BroadcastRing.cellCursor].pointee.load(ordering: .acquiring)
                if c < slowest { slowest = c; slowestCell = cell }
            }
            control[BroadcastRing.gateWord].pointee.store(slowest, ordering: .relaxed)
            control[BroadcastRing.seenGatingEpochWord].pointee.store(epoch, ordering: .relaxed)
            if slowest == UInt64.max || last <= slowest &+ UInt64(capacity) { return }
            let w = cellWord(slowestCell, 0)
            if !stalled {
                stalled = true
                control[BroadcastRing.stallsWord].pointee.wrappingAdd(1, ordering: .relaxed)
                control[w + BroadcastRing.cellStalls].pointee.wrappingAdd(1, ordering: .relaxed)
            }
            switch producerWait {
            case .busySpin:
                relax()
            case .yield:
                spins += 1
                if spins < spinsBeforeBlocking { relax() } else { yieldThread() }
            case .park:
                spins += 1
                if spins < spinsBeforeBlocking { relax(); continue }
                // A count of sleepers that each sleeper takes back itself: a consumer's wake only reads it. When the
                // consumer cleared a flag instead, it could clear it for a cursor this thread had already seen, as
                // this thread was going to sleep on that cursor; the next cursor then woke nobody.
                let waiting = control[w + BroadcastRing.cellProducerWaiting]
                waiting.pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
                if asymmetricFences { tw_membarrier() }
                #if DEBUG
                failPoint?(.producerRegistered)
                #endif
                let c = control[w + BroadcastRing.cellCursor].pointee.load(ordering: .sequentiallyConsistent)
                if c == slowest,
                   control[w + BroadcastRing.cellState].pointee.load(ordering: .sequentiallyConsistent) == BroadcastRing.stateBlocking,
                   // A 10 ms backstop: the wake is exact, the timeout only bounds the cost of a bug.
                   tw_futex_wait(control.futexWord(w + BroadcastRing.cellCursor), UInt32(truncatingIfNeeded: c), 10_000_000) != 0,
                   errno == ETIMEDOUT, control[w + BroadcastRing.cellCursor].pointee.load(ordering: .acquiring) != c {
                    control[BroadcastRing.missedWakesWord].pointee.wrappingAdd(1, ordering: .relaxed)
                }
                waiting.pointee.wrappingSubtract(1, ordering: .sequentiallyConsistent)
            case .sleep(let nanos):
                // Not announced as waiting: the consumer's progress wakes nobody, the producer looks again after
                // the sleep.
                let c = control[w + BroadcastRing.cellCursor].pointee.load(ordering: .acquiring)
                _ = tw_futex_wait(control.futexWord(w + BroadcastRing.cellCursor), UInt32(truncatingIfNeeded: c), Swift.max(1_000, nanos))
            }
        }
    }

    @inlinable @inline(__always)
    func cellWord(_ cell: Int, _ field: Int) -> Int {
        BroadcastRing.firstCellWord + cell * BroadcastRing.wordsPerLine + field
    }

    /// Marks the end of the stream: consumers drain what is published, then `poll` returns -1. Publishing after
    /// `close` is a programming error.
    public func close() {
        control[BroadcastRing.closedWord].pointee.store(1, ordering: .sequentiallyConsistent)
        control[BroadcastRing.parkedWord].pointee.store(1, ordering: .sequentiallyConsistent)
        wakeConsumers()
        wakeNappers()
    }

    // MARK: - Consumers

    /// Attaches a consumer that starts at the next published sequence. Safe while the producer runs.
    /// - Parameters:
    ///   - name: shown by `tickwire stats`.
    ///   - policy: `.lossy` (never holds the producer back) or `.blocking` (sees everything; may stall it).
    ///   - wait: how `poll` waits for events.
    /// - Precondition: fewer than `maxConsumers` consumers are attached.
    public func addConsumer(name: String, policy: ConsumerPolicy, wait: WaitStrategy) -> RingConsumer {
        let cell: Int = registry.withLock { r in
            guard let cell = r.free.popLast() else {
                preconditionFailure("ring has \(maxConsumers) consumers attached; cannot attach '\(name)'")
            }
            r.names[cell] = name
            r.policies[cell] = policy
            r.highWater = Swift.max(r.highWater, cell + 1)
            cellHighWater.store(r.highWater, ordering: .releasing)
            return cell
        }
        let w = cellWord(cell, 0)
        for f in [BroadcastRing.cellStalls, BroadcastRing.cellDelivered, BroadcastRing.cellDropped,
                  BroadcastRing.cellResyncs] {
            control[w + f].pointee.store(0, ordering: .relaxed)
        }
        let start: UInt64
        switch policy {
        case .lossy:
            // Counted before the start is read, so the producer stops filling slots in place before it can
            // reach a slot this consumer will copy (see `hasUnguardedReaders`).
            control[BroadcastRing.unguardedReadersWord].pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
            if asymmetricFences { tw_membarrier() }
            start = control[BroadcastRing.publishedWord].pointee.load(ordering: .sequentiallyConsistent)
            control[w + BroadcastRing.cellCursor].pointee.store(start, ordering: .relaxed)
            control[w + BroadcastRing.cellState].pointee.store(BroadcastRing.stateLossy, ordering: .releasing)
        case .blocking:
            // A tentative cursor no higher than any the producer may have cached, made visible first; then the
            // real start read after the cell is visible: a gating scan that missed the cell ran before that
            // read, so it cannot have let the producer run more than a ring past the start.
            let tentative = publishedSequence
            control[w + BroadcastRing.cellCursor].pointee.store(tentative, ordering: .sequentiallyConsistent)
            control[w + BroadcastRing.cellState].pointee.store(BroadcastRing.stateBlocking, ordering: .sequentiallyConsistent)
            control[BroadcastRing.gatingEpochWord].pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
            start = control[BroadcastRing.publishedWord].pointee.load(ordering: .sequentiallyConsistent)
            control[w + BroadcastRing.cellCursor].pointee.store(start, ordering: .sequentiallyConsistent)
        }
        return RingConsumer(ring: self, cell: cell, name: name, policy: policy, wait: wait, next: start &+ 1)
    }

    /// Detaches `consumer`: it stops gating the producer at once and its `poll` returns -1 from then on.
    public func removeConsumer(_ consumer: RingConsumer) {
        precondition(consumer.ring === self, "consumer '\(consumer.name)' belongs to another ring")
        consumer.detach()
    }

    /// Called by a consumer once: frees its cell for reuse after its last poll.
    func deactivate(cell: Int) {
        let w = cellWord(cell, 0)
        if control[w + BroadcastRing.cellState].pointee.load(ordering: .relaxed) == BroadcastRing.stateBlocking {
            // Counted before it stops gating: a poll on another thread may still be copying slots, and the
            // producer must not write them in place (see `hasUnguardedReaders`).
            control[BroadcastRing.unguardedReadersWord].pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
        }
        let wasBlocking = control[w + BroadcastRing.cellState].pointee.exchange(0, ordering: .sequentiallyConsistent) == BroadcastRing.stateBlocking
        if wasBlocking {
            control[BroadcastRing.gatingEpochWord].pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
            // Moves the futex word the producer may sleep on, then wakes it so it rescans.
            control[w + BroadcastRing.cellCursor].pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
            _ = tw_futex_wake(control.futexWord(w + BroadcastRing.cellCursor), Int32.max)
        }
        // A parked consumer being removed wakes and sees it.
        control[BroadcastRing.parkedWord].pointee.store(1, ordering: .sequentiallyConsistent)
        wakeConsumers()
        wakeNappers()
    }

    /// Called by a consumer's deinit, after its last poll (and after `deactivate`): from here it can copy no
    /// slot, so it stops counting as an unguarded reader.
    func release(cell: Int) {
        registry.withLock { r in
            control[BroadcastRing.unguardedReadersWord].pointee.wrappingSubtract(1, ordering: .sequentiallyConsistent)
            r.names[cell] = nil
            r.policies[cell] = nil
            r.free.append(cell)
        }
    }

    /// One row per attached consumer, for `tickwire stats` and metrics. Readable from any thread.
    public func consumerStats() -> [(name: String, policy: ConsumerPolicy, counters: ConsumerCounters)] {
        let rows: [(Int, String, ConsumerPolicy)] = registry.withLock { r in
            (0..<r.highWater).compactMap { i in
                guard let n = r.names[i], let p = r.policies[i] else { return nil }
                return (i, n, p)
            }
        }
        return rows.map { ($0.1, $0.2, counters(cell: $0.0)) }
    }

    func counters(cell: Int) -> ConsumerCounters {
        let w = cellWord(cell, 0)
        let cursor = control[w + BroadcastRing.cellCursor].pointee.load(ordering: .relaxed)
        let published = publishedSequence
        return ConsumerCounters(
            delivered: control[w + BroadcastRing.cellDelivered].pointee.load(ordering: .relaxed),
            dropped: control[w + BroadcastRing.cellDropped].pointee.load(ordering: .relaxed),
            lag: published > cursor ? published - cursor : 0,
            resyncs: control[w + BroadcastRing.cellResyncs].pointee.load(ordering: .relaxed),
            stalls: control[w + BroadcastRing.cellStalls].pointee.load(ordering: .relaxed))
    }
}

/// What one consumer has seen and cost, readable from any thread.
public struct ConsumerCounters: Sendable, Equatable {
    /// Events handed to the consumer's body (GAP and resync events included).
    public var delivered: UInt64
    /// Sequences lost to laps (the sum of the GAP ranges).
    public var dropped: UInt64
    /// Published sequences the consumer has not yet finished with.
    public var lag: UInt64
    /// Times it was lapped and resynchronised from the last-value cache.
    public var resyncs: UInt64
    /// Times the producer had to wait for it (blocking consumers only).
    public var stalls: UInt64

    public init(delivered: UInt64 = 0, dropped: UInt64 = 0, lag: UInt64 = 0, resyncs: UInt64 = 0, stalls: UInt64 = 0) {
        self.delivered = delivered; self.dropped = dropped; self.lag = lag; self.resyncs = resyncs; self.stalls = stalls
    }
}

/// Whether this process could register for expedited membarrier (asked once, at the first ring). Setting
/// TICKWIRE_RING_NO_MEMBARRIER in the environment turns it off (sequentially consistent handshakes, for A/B runs).
let membarrierAvailable: Bool = getenv("TICKWIRE_RING_NO_MEMBARRIER") == nil && tw_membarrier_register() == 0
