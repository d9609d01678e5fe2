import CTickwireSys
import Synchronization
import TickwireCore
import TickwireRing

/// Sends the ring's events on the PUB socket (and to NATS) from whichever thread holds the *turn*.
///
/// A producer that has just published into the ring (a source, the trade-event forwarder, alerts and risk) calls
/// `kick`: if the turn is free it takes it and sends what is waiting itself, on its own thread, so an event
/// reaches ZeroMQ without a wake-up of another thread (zmq_proxy's shape: receive and send on one thread). A
/// source with more input waiting (a full batch) hands the sending to the publisher thread instead, so reading and
/// sending run on two threads in a flood; that thread also takes over when a kick finds more than `kickLimit`
/// events waiting, and looks every 10 ms for what no kick sent (snapshot requests, a takeover, a producer that
/// does not kick).
///
/// One thread at a time holds the turn, so the consumer, the sockets and the publisher's sequencer keep a single
/// user; the turn's acquiring take and releasing return order their accesses, which is what libzmq asks of a
/// socket that changes threads (a full barrier). No event waits for a turn it cannot get: a producer that finds
/// the turn taken has published before it looked, and the holder looks at the ring again after it lets the turn
/// go (a store and a load, both sequentially consistent, against the producer's publish and its take).
///
/// Before, the publisher thread parked on the ring and each batch woke it: on a 2-vCPU machine that wake-up and
/// its spin were about half of what the daemon added to zmq_proxy's latency at 20k msgs/s (docs/BENCH-HISTORY.md, E10).
final class PublishStage: @unchecked Sendable {
    let publisher: ZMQPublisher
    private let ring: BroadcastRing
    /// Its place in the ring (polled by the turn's holder only).
    let consumer: RingConsumer
    private let lease: MarketDataLease?
    private let takeover: SubjectID
    /// Held by the thread sending now.
    private let turn = Atomic<Bool>(false)
    /// The last sequence the holder has finished with, for a look at the ring without the turn.
    private let sentThrough = Atomic<UInt64>(0)
    /// Set once the ring is closed and drained; the publisher thread then keeps the turn for good.
    private let finished = Atomic<Bool>(false)
    /// The publisher thread's futex: bumped to wake it, with `asleep` so a wake nobody waits for costs no call.
    private let wakeEpoch = UnsafeMutablePointer<Atomic<UInt32>>.allocate(capacity: 1)
    private let asleep = Atomic<Bool>(false)

    /// Events a producer sends itself before it hands the rest to the publisher thread.
    static let kickLimit = 1_024
    /// Pauses (~25 ns each) the publisher thread spins for more before it sleeps.
    static let spinsBeforeSleeping = 256
    /// How long the publisher thread sleeps when nobody wakes it.
    static let idleNanos: Int64 = 10_000_000

    init(publisher: ZMQPublisher, ring: BroadcastRing, lease: MarketDataLease?, takeover: SubjectID) {
        self.publisher = publisher
        self.ring = ring
        self.lease = lease
        self.takeover = takeover
        // Polled with a zero timeout only: it never waits, so the ring never wakes anyone for it.
        consumer = ring.addConsumer(name: "zmq-publisher", policy: .blocking, wait: .busySpin)
        wakeEpoch.initialize(to: Atomic(0))
    }

    deinit {
        wakeEpoch.deinitialize(count: 1)
        wakeEpoch.deallocate()
    }

    /// After a publish into the ring: sends what is waiting if no other thread is sending, else leaves it to the
    /// thread that is (it looks again once it lets the turn go).
    /// - Parameter flooding: the producer has more input waiting (it published a full batch): the publisher thread
    ///   sends, so that reading the input and sending run on two threads.
    func kick(flooding: Bool = false) {
        // The wake-up's sequentially consistent add orders the publish before it.
        if flooding { wakeThread(); return }
        // Orders this thread's publish before its look at the turn, for a ring without symmetric fences too.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        while take() {
            let more = send(limit: Self.kickLimit)
            release()
            if more { wakeThread(); return }
            guard waiting else { return }
        }
    }

    /// The publisher thread: sends what kicks hand over and what they missed, until the ring is closed and drained.
    func run() {
        while !finished.load(ordering: .acquiring) {
            if take() {
                if send(limit: Int.max) {
                    finished.store(true, ordering: .releasing)
                    break   // keeps the turn: nothing more is sent
                }
                release()
            }
            sleepUntilWoken()
        }
        publisher.natsHandoff?.close()
        publisher.snapshotSocket?.close()
        publisher.stopBudget()
    }

    /// Wakes the publisher thread (a flood, or the ring closing).
    func wakeThread() {
        wakeEpoch.pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
        if asleep.load(ordering: .sequentiallyConsistent) { _ = tw_futex_wake(futexWord, 1) }
    }

    // MARK: - The turn

    private func take() -> Bool {
        turn.compareExchange(expected: false, desired: true, ordering: .sequentiallyConsistent).exchanged
    }

    private func release() {
        turn.store(false, ordering: .sequentiallyConsistent)
    }

    /// Whether the ring holds events the last holder did not send. The fence makes the load of the published
    /// sequence sequentially consistent after the turn's return (the ring's own accessor only acquires).
    private var waiting: Bool {
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        return ring.publishedSequence > sentThrough.load(ordering: .relaxed) && !finished.load(ordering: .relaxed)
    }

    private var futexWord: UnsafeMutablePointer<UInt32> { UnsafeMutableRawPointer(wakeEpoch).assumingMemoryBound(to: UInt32.self) }

    private func sleepUntilWoken() {
        // A flood's next batch usually comes within the spin: no system call on either side.
        for _ in 0..<Self.spinsBeforeSleeping where !waiting { tw_cpu_relax() }
        asleep.store(true, ordering: .sequentiallyConsistent)
        let epoch = wakeEpoch.pointee.load(ordering: .sequentiallyConsistent)
        if !waiting { _ = tw_futex_wait(futexWord, epoch, Self.idleNanos) }
        asleep.store(false, ordering: .relaxed)
    }

    // MARK: - Sending (holding the turn)

    /// Announces takeovers, then sends up to about `limit` events in batches of 256, gated by the lease (checked
    /// per batch and, against its end, every millisecond within one: active/active, only the lease holder's events
    /// pass), and answers waiting snapshot requests.
    /// - Returns: true when the ring is closed and drained (from `run`) or, from a kick, when `limit` was reached
    ///   with events perhaps left.
    private func send(limit: Int) -> Bool {
        for t in lease?.takeTakeovers() ?? [] {
            // What this daemon published before it last lost the lease is older than the other's since.
            if publisher.snapshotValues != nil { publisher.snapshotValues = PublishedLastValues() }
            publisher.send(Event(subjectID: takeover, kind: .gap, flags: 2, eventTime: Nanos(t.to), knownTime: .now(),
                                 a: t.from, b: t.to))
        }
        var sent = 0, closed = false
        while sent < limit {
            var until: Int64 = 0
            let n = consumer.poll(maxBatch: 256, timeoutNanos: 0) { event in
                if let lease {
                    let now = tw_monotonic_ns()
                    if now >= until {
                        guard lease.isActive(now: now) else { return }
                        until = now + 1_000_000
                    }
                }
                publisher.send(event)
            }
            if n < 0 { closed = true; break }
            if n == 0 { break }
            sent += n
        }
        sentThrough.store(consumer.nextSequence &- 1, ordering: .relaxed)
        if sent > 0 { publisher.natsHandoff?.wakeConsumer() }
        if publisher.snapshotSocket != nil { publisher.serveSnapshots(standby: lease.map { !$0.isActive() } ?? false) }
        return closed || sent >= limit
    }
}
