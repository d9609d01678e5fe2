import CTickwireSys
import Synchronization
import TickwireCore

/// A bounded single-producer, single-consumer queue of encoded wire messages: the thread sending to ZeroMQ (the
/// holder of `PublishStage`'s turn, one at a time, the turn ordering them) hands each payload it sent (already
/// numbered) to the NATS publisher thread.
///
/// Why not a second ring consumer: NATS must carry the same `seq`/`subject_seq` as ZeroMQ, and those numbers
/// depend on every event before them. A lossy ring consumer that is lapped cannot number what follows the loss;
/// a blocking one would let a slow NATS server hold the feed back (NATS.md: a stalled subscriber slowed a
/// publisher from ~840k to ~155k msgs/s). So the one numbering authority, the ZeroMQ publisher, pushes here and
/// never waits: when the queue is full the message is dropped and counted, and the NATS thread sees the hole in
/// `seq` and reports it as a GAP.
///
/// ```
/// control (128-byte lines):  [tail ........][head ........][waiting .....][closed ......]
/// slot i (80 bytes):         [subject id u32][pad u32][payload 72 bytes]
/// ```
final class NATSHandoff: @unchecked Sendable {
    static let slotSize = 8 + WireCodec.payloadSize
    static let payloadOffset = 8
    private static let wordsPerLine = 16
    private static let tailWord = 0, headWord = 16, waitingWord = 32, closedWord = 48, controlWords = 64

    let capacity: Int
    private let mask: Int
    private let control: UnsafeMutablePointer<Atomic<UInt64>>
    private let slots: UnsafeMutableRawPointer
    /// The producer's own copies: its tail, and the head it last read (re-read only when the queue looks full).
    @exclusivity(unchecked) private var producerTail: UInt64 = 0
    @exclusivity(unchecked) private var producerHeadCache: UInt64 = 0
    /// The consumer's own head.
    @exclusivity(unchecked) private var consumerHead: UInt64 = 0
    /// Messages dropped because the queue was full (the NATS thread fell a queue's length behind).
    let dropped = Atomic<UInt64>(0)

    /// - Parameter capacity: slots, a power of two.
    init(capacity: Int) {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0, "capacity must be a power of two")
        self.capacity = capacity
        mask = capacity - 1
        let raw = UnsafeMutableRawPointer.allocate(byteCount: Self.controlWords * 8, alignment: 128)
        control = raw.bindMemory(to: Atomic<UInt64>.self, capacity: Self.controlWords)
        for i in 0..<Self.controlWords { (control + i).initialize(to: Atomic(0)) }
        slots = UnsafeMutableRawPointer.allocate(byteCount: capacity * Self.slotSize, alignment: 128)
    }

    deinit {
        control.deinitialize(count: Self.controlWords)
        UnsafeMutableRawPointer(control).deallocate()
        slots.deallocate()
    }

    // MARK: Producer (the holder of the publish turn)

    /// Copies one payload in; never waits. - Returns: false when the queue was full (the message is counted as
    /// dropped).
    @inline(__always)
    func push(subjectID: SubjectID, payload: UnsafeRawPointer) -> Bool {
        if producerTail &- producerHeadCache >= UInt64(capacity) {
            producerHeadCache = control[Self.headWord].load(ordering: .acquiring)
            if producerTail &- producerHeadCache >= UInt64(capacity) {
                dropped.add(1, ordering: .relaxed)
                return false
            }
        }
        let slot = slots + (Int(truncatingIfNeeded: producerTail) & mask) * Self.slotSize
        slot.storeBytes(of: subjectID, as: UInt32.self)
        (slot + Self.payloadOffset).copyMemory(from: payload, byteCount: WireCodec.payloadSize)
        producerTail &+= 1
        control[Self.tailWord].store(producerTail, ordering: .releasing)
        return true
    }

    /// Wakes the consumer if it sleeps; the producer calls it once per batch, not per message.
    func wakeConsumer() {
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        guard control[Self.waitingWord].load(ordering: .sequentiallyConsistent) != 0 else { return }
        control[Self.waitingWord].store(0, ordering: .sequentiallyConsistent)
        _ = tw_futex_wake(futexWord(Self.tailWord), Int32.max)
    }

    /// No more pushes; the consumer drains what is queued and then sees the end.
    func close() {
        control[Self.closedWord].store(1, ordering: .sequentiallyConsistent)
        control[Self.waitingWord].store(0, ordering: .sequentiallyConsistent)
        _ = tw_futex_wake(futexWord(Self.tailWord), Int32.max)
    }

    // MARK: Consumer (the NATS publisher thread)

    /// Hands up to `maxBatch` queued messages to `body` (subject id, 72-byte payload), waiting up to
    /// `timeoutNanos` for the first. - Returns: how many were handed, or -1 once closed and drained.
    /// - warning: the payload pointer is valid only inside `body`.
    func drain(maxBatch: Int, timeoutNanos: Int64, _ body: (SubjectID, UnsafeRawBufferPointer) -> Void) -> Int {
        var tail = control[Self.tailWord].load(ordering: .acquiring)
        if tail == consumerHead {
            var spins = 0
            while tail == consumerHead && spins < 256 {
                tw_cpu_relax()
                spins += 1
                tail = control[Self.tailWord].load(ordering: .acquiring)
            }
            if tail == consumerHead {
                if control[Self.closedWord].load(ordering: .acquiring) != 0 { return -1 }
                control[Self.waitingWord].store(1, ordering: .sequentiallyConsistent)
                tail = control[Self.tailWord].load(ordering: .sequentiallyConsistent)
                if tail == consumerHead && control[Self.closedWord].load(ordering: .sequentiallyConsistent) == 0 {
                    _ = tw_futex_wait(futexWord(Self.tailWord), UInt32(truncatingIfNeeded: tail), timeoutNanos)
                }
                control[Self.waitingWord].store(0, ordering: .relaxed)
                tail = control[Self.tailWord].load(ordering: .acquiring)
                if tail == consumerHead { return 0 }
            }
        }
        let n = Int(min(tail &- consumerHead, UInt64(maxBatch)))
        for _ in 0..<n {
            let slot = slots + (Int(truncatingIfNeeded: consumerHead) & mask) * Self.slotSize
            body(slot.load(as: UInt32.self),
                 UnsafeRawBufferPointer(start: slot + Self.payloadOffset, count: WireCodec.payloadSize))
            consumerHead &+= 1
            // Release each slot as soon as it is sent: a burst never waits for the end of a long batch.
            control[Self.headWord].store(consumerHead, ordering: .releasing)
        }
        return n
    }

    /// Messages queued now (approximate from any thread).
    var queued: UInt64 {
        control[Self.tailWord].load(ordering: .relaxed) &- control[Self.headWord].load(ordering: .relaxed)
    }

    private func futexWord(_ word: Int) -> UnsafeMutablePointer<UInt32> {
        UnsafeMutableRawPointer(control + word).assumingMemoryBound(to: UInt32.self)
    }
}
