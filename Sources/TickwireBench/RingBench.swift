import CTickwireSys
import Foundation
import Synchronization
import TickwireCore
import TickwireRing
import TickwireZMQ

/// `tickwire-bench ring`: the broadcast ring beside a lock-guarded deque, AsyncStream and libzmq inproc
/// PUB/SUB, all in the same run. Throughput for SPSC (one at a time and batched) and one producer to four
/// consumers; hop latency percentiles busy-spinning and parked.
///
/// Parameters: `events` (per throughput run), `runs`; `latency_samples` (default 200000).
enum RingBench {
    static let batch = 64
    static let ringCapacity = 16_384

    static func run(_ options: BenchOptions) throws -> any BenchReport {
        let n = options.events
        let runs = options.runs
        let samples = Int(options.parameters["latency_samples"] ?? "") ?? 200_000
        let slowN = min(n, 2_000_000)   // baselines that run at a few million a second
        // `only=hop`: the pinned busy-spin hop and its floor alone, e.g. to watch them over time.
        if options.parameters["only"] == "hop" {
            let (ring, floor, p99s) = pinnedHops(samples: samples, rounds: runs)
            return HopOnly(ringBusySpinPinned: ring.report, floorOneAtomicWordPinned: floor.report,
                           ratioP99RingBusySpinPinnedVsFloor: ratio(Double(ring.p99), Double(floor.p99)),
                           p99NsRingAndFloorByRound: p99s)
        }

        // `only=spsc`: the batched ring (its single-producer and its multi-producer path, one producer either way)
        // against the plain in-place SPSC floor, taking turns round by round.
        if options.parameters["only"] == "spsc" {
            let r = interleaved(runs, [
                { ringSPSC(events: n, batch: batch, wait: .yield) },
                { ringSPSC(events: n, batch: batch, wait: .yield, producers: .multi) },
                { plainSPSC(events: n, batch: batch) },
            ])
            return SPSCOnly(events: n, runs: runs, ringBatch64: r[0].rounds, ringMultiBatch64: r[1].rounds, plainSpscRingBatch64: r[2].rounds,
                            ratioRingBatch64VsPlainSpscRingBatch64: medianRatio(r[0].rounds, r[2].rounds),
                            ratioRingMultiBatch64VsPlainSpscRingBatch64: medianRatio(r[1].rounds, r[2].rounds))
        }

        // SPSC throughput: producer and consumer pinned to the two CPUs; the ring and its baselines take turns
        // round by round, and ratios are medians of per-round ratios.
        let spsc = interleaved(runs, [
            { ringSPSC(events: n, batch: batch, wait: .yield) },
            { plainSPSC(events: n, batch: batch) },
            { dequeSPSC(events: slowN, batch: batch) },
            { ringSPSC(events: slowN, batch: 1, wait: .yield) },
            { plainSPSC(events: slowN, batch: 1) },
            { dequeSPSC(events: slowN, batch: 1) },
        ])
        let (ringBatch, plainBatch, dequeBatch, ringSingle, plainSingle, dequeSingle) = (spsc[0], spsc[1], spsc[2], spsc[3], spsc[4], spsc[5])
        let ringBatchSpin = bestAndMedian(runs) { ringSPSC(events: n, batch: batch, wait: .busySpin) }
        let stream = bestAndMedian(runs) { asyncStreamSPSC(events: slowN) }
        let zmq = try bestAndMedian(runs) { try zmqSPSC(events: min(n, 1_000_000)) }
        let sameThreadRing = bestAndMedian(runs) { ringSameThread(events: n) }
        let sameThreadDeque = bestAndMedian(runs) { dequeSameThread(events: n) }

        // One producer, four consumers.
        let fanBlockingYield = bestAndMedian(runs) { ringFanOut(events: n, consumers: 4, policy: .blocking, wait: .yield) }
        let fanBlockingPark = bestAndMedian(runs) { ringFanOut(events: n, consumers: 4, policy: .blocking, wait: .park) }
        let fanLossy = ringFanOutLossy(events: n, consumers: 4)
        let fanDeque = bestAndMedian(runs) { dequeFanOut(events: slowN, consumers: 4) }

        // Hop latency.
        let hopSpin = ringHop(samples: samples, wait: .busySpin, gapNanos: 2_000)
        let (hopSpinPinned, hopFloor, hopP99s) = pinnedHops(samples: samples, rounds: runs)
        let hopPark = ringHop(samples: min(samples, 20_000), wait: .park, gapNanos: 50_000)
        let hopDequeSpin = dequeHop(samples: samples, park: false, gapNanos: 2_000)
        let hopDequePark = dequeHop(samples: min(samples, 20_000), park: true, gapNanos: 50_000)
        let hopStream = asyncStreamHop(samples: min(samples, 20_000), gapNanos: 50_000)
        let hopZMQ = try zmqHop(samples: min(samples, 20_000), gapNanos: 50_000)

        return Result(
            events: n, runs: runs, batch: batch, ringCapacity: ringCapacity,
            spsc: .init(
                ringBatch64: Rate((ringBatch.best, ringBatch.median)), ringBatch64BusySpin: Rate(ringBatchSpin),
                ringOneAtATime: Rate((ringSingle.best, ringSingle.median)),
                plainSpscRingBatch64: Rate((plainBatch.best, plainBatch.median)),
                plainSpscRingOneAtATime: Rate((plainSingle.best, plainSingle.median)),
                lockedDequeBatch64: Rate((dequeBatch.best, dequeBatch.median)),
                lockedDequeOneAtATime: Rate((dequeSingle.best, dequeSingle.median)),
                asyncStream: Rate(stream), zmqInprocPubsub: Rate(zmq),
                ratioRingBatch64VsLockedDequeOneAtATime: medianRatio(ringBatch.rounds, dequeSingle.rounds),
                ratioRingBatch64VsLockedDequeBatch64: medianRatio(ringBatch.rounds, dequeBatch.rounds),
                ratioRingBatch64VsPlainSpscRingBatch64: medianRatio(ringBatch.rounds, plainBatch.rounds),
                ratioRingOneAtATimeVsLockedDequeOneAtATime: medianRatio(ringSingle.rounds, dequeSingle.rounds),
                ratioRingOneAtATimeVsPlainSpscRingOneAtATime: medianRatio(ringSingle.rounds, plainSingle.rounds),
                ratioRingBatch64VsAsyncStream: ratio(ringBatch.median, stream.median),
                ratioRingBatch64VsZmqInproc: ratio(ringBatch.median, zmq.median)),
            sameThreadPublishThenPollBatch64: .init(
                ring: Rate(sameThreadRing), lockedDeque: Rate(sameThreadDeque),
                ratioRingVsLockedDeque: ratio(sameThreadRing.median, sameThreadDeque.median)),
            fanout_1p_4c: .init(
                ringBlockingYield: Rate(fanBlockingYield), ringBlockingPark: Rate(fanBlockingPark), ringLossyYield: fanLossy,
                lockedDequeX4: Rate(fanDeque),
                ratioRingBlockingYieldVsLockedDeque: ratio(fanBlockingYield.median, fanDeque.median),
                ratioRingBlockingParkVsLockedDeque: ratio(fanBlockingPark.median, fanDeque.median)),
            hopLatency: .init(
                ringBusySpin: hopSpin.report, ringBusySpinPinned: hopSpinPinned.report, floorOneAtomicWordPinned: hopFloor.report,
                ratioP99RingBusySpinPinnedVsFloor: ratio(Double(hopSpinPinned.p99), Double(hopFloor.p99)),
                p99NsRingAndFloorByRound: hopP99s,
                ringParked: hopPark.report, lockedDequeSpin: hopDequeSpin.report, lockedDequeCondvar: hopDequePark.report,
                asyncStream: hopStream.report, zmqInprocPubsub: hopZMQ.report,
                ratioP99LockedDequeSpinVsRingBusySpin: ratio(Double(hopDequeSpin.p99), Double(hopSpin.p99)),
                ratioP99LockedDequeCondvarVsRingParked: ratio(Double(hopDequePark.p99), Double(hopPark.p99)),
                ratioP99AsyncStreamVsRingParked: ratio(Double(hopStream.p99), Double(hopPark.p99)),
                ratioP99ZmqVsRingParked: ratio(Double(hopZMQ.p99), Double(hopPark.p99))))
    }

    struct Result: BenchReport {
        var suite = "ring"
        var events: Int, runs: Int, batch: Int, ringCapacity: Int
        struct SPSC: Codable, Sendable {
            var note = "producer and consumer pinned to CPUs 0 and 1; they yield after a short spin when they must wait (busy_spin: never yield); ratios are medians of per-round ratios, the measures taking turns"
            var ringBatch64: Rate, ringBatch64BusySpin: Rate, ringOneAtATime: Rate
            var plainSpscRingBatch64: Rate, plainSpscRingOneAtATime: Rate
            var lockedDequeBatch64: Rate, lockedDequeOneAtATime: Rate, asyncStream: Rate, zmqInprocPubsub: Rate
            var ratioRingBatch64VsLockedDequeOneAtATime: Double, ratioRingBatch64VsLockedDequeBatch64: Double
            var ratioRingBatch64VsPlainSpscRingBatch64: Double
            var ratioRingOneAtATimeVsLockedDequeOneAtATime: Double, ratioRingOneAtATimeVsPlainSpscRingOneAtATime: Double
            var ratioRingBatch64VsAsyncStream: Double, ratioRingBatch64VsZmqInproc: Double
        }
        var spsc: SPSC
        struct SameThread: Codable, Sendable {
            var note = "one thread publishes 64 then polls 64: the per-event cost with no scheduler in the way"
            var ring: Rate, lockedDeque: Rate, ratioRingVsLockedDeque: Double
        }
        var sameThreadPublishThenPollBatch64: SameThread
        struct FanOut: Codable, Sendable {
            var note = "rates are events delivered to EACH consumer per second; 5 threads on 2 cores"
            var ringBlockingYield: Rate, ringBlockingPark: Rate, ringLossyYield: Lossy, lockedDequeX4: Rate
            var ratioRingBlockingYieldVsLockedDeque: Double, ratioRingBlockingParkVsLockedDeque: Double
        }
        struct Lossy: Codable, Sendable {
            var producerPerS: Double, minDeliveredPerConsumerPerS: Double, lostFractionMax: Double, resyncsTotal: UInt64
        }
        var fanout_1p_4c: FanOut
        struct Hops: Codable, Sendable {
            var note = "publish to delivery, one event at a time; busy-spin events every 2 us, parked every 50 us; unpinned except ring_busy_spin_pinned (producer and consumer on CPUs 0 and 1, like the SPSC rows)"
            var ringBusySpin: Latency, ringBusySpinPinned: Latency, floorOneAtomicWordPinned: Latency
            var ratioP99RingBusySpinPinnedVsFloor: Double
            var p99NsRingAndFloorByRound: [[UInt64]]
            var ringParked: Latency, lockedDequeSpin: Latency, lockedDequeCondvar: Latency, asyncStream: Latency, zmqInprocPubsub: Latency
            var ratioP99LockedDequeSpinVsRingBusySpin: Double, ratioP99LockedDequeCondvarVsRingParked: Double
            var ratioP99AsyncStreamVsRingParked: Double, ratioP99ZmqVsRingParked: Double
        }
        var hopLatency: Hops
    }

    /// `only=hop`: the pinned busy-spin hop and its floor alone.
    struct HopOnly: BenchReport {
        var suite = "ring"
        var only = "hop"
        var ringBusySpinPinned: Latency, floorOneAtomicWordPinned: Latency
        var ratioP99RingBusySpinPinnedVsFloor: Double
        var p99NsRingAndFloorByRound: [[UInt64]]
    }

    /// `only=spsc`: every round's rates (events/s) of the batched ring and the plain floor.
    struct SPSCOnly: BenchReport {
        var suite = "ring"
        var only = "spsc"
        var events: Int, runs: Int
        var ringBatch64: [Double], ringMultiBatch64: [Double], plainSpscRingBatch64: [Double]
        var ratioRingBatch64VsPlainSpscRingBatch64: Double, ratioRingMultiBatch64VsPlainSpscRingBatch64: Double
    }

    // MARK: - Throughput

    /// One producer, one blocking consumer, both waiting per `wait`; events per second delivered.
    static func ringSPSC(events: Int, batch: Int, wait: WaitStrategy, producers: ProducerMode = .single) -> Double {
        let ring = BroadcastRing(capacity: ringCapacity, producers: producers, gapSubject: 0, producerWait: wait)
        let consumer = ring.addConsumer(name: "spsc", policy: .blocking, wait: wait)
        let sum = BenchBox<Int64>(0)
        let reader = BenchThread(cpu: consumerCPU) {
            var s: Int64 = 0
            while consumer.poll(maxBatch: 1024, timeoutNanos: nil, { s &+= $0.a }) >= 0 {}
            sum.set(s)
        }
        return pinnedRate(events: events, reader: reader, sum: sum, "ring SPSC") {
            publish(ring, events: events, batch: batch)
            ring.close()
        }
    }

    /// Times `produce` (which publishes events 1...`events` and closes the queue) on the producer CPU until the
    /// consumer already running on `reader` has drained them; checks that the consumer's sum of `a` is complete.
    /// - Returns: events per second delivered.
    static func pinnedRate(events: Int, reader: BenchThread, sum: BenchBox<Int64>, _ what: String,
                           produce: () -> Void) -> Double {
        let (t0, t1) = pinned(producerCPU) {
            let t0 = benchNow()
            produce()
            reader.join()
            return (t0, benchNow())
        }
        precondition(sum.get == Int64(events) * Int64(events + 1) / 2, "\(what) lost or corrupted events")
        return Double(events) / Double(t1 - t0) * 1e9
    }

    /// One thread alternates a batch of 64 published and 64 polled.
    static func ringSameThread(events: Int) -> Double {
        let ring = BroadcastRing(capacity: ringCapacity, gapSubject: 0)
        let consumer = ring.addConsumer(name: "same", policy: .blocking, wait: .busySpin)
        var s: Int64 = 0
        let t0 = benchNow()
        var i = 1
        while i <= events {
            let base = i
            i += ring.publishBatch(count: min(batch, events - i + 1)) { b in
                for k in 0..<b.count { b[k] = benchEvent(SubjectID((base + k) & 1023), Int64(base + k)) }
            }
            _ = consumer.poll(maxBatch: batch, timeoutNanos: 0) { s &+= $0.a }
        }
        let t1 = benchNow()
        precondition(s == Int64(events) * Int64(events + 1) / 2)
        return Double(events) / Double(t1 - t0) * 1e9
    }

    static func dequeSameThread(events: Int) -> Double {
        let q = LockedDequeQueue(capacity: ringCapacity)
        let staging = UnsafeMutableBufferPointer<Event>.allocate(capacity: batch)
        defer { staging.deallocate() }
        var s: Int64 = 0
        let t0 = benchNow()
        var i = 1
        while i <= events {
            let m = min(batch, events - i + 1)
            for k in 0..<m { staging[k] = benchEvent(SubjectID((i + k) & 1023), Int64(i + k)) }
            q.push(UnsafeBufferPointer(rebasing: staging[0..<m]))
            let n = q.pop(into: staging, park: false)
            for k in 0..<n { s &+= staging[k].a }
            i += m
        }
        let t1 = benchNow()
        precondition(s == Int64(events) * Int64(events + 1) / 2)
        return Double(events) / Double(t1 - t0) * 1e9
    }

    static func publish(_ ring: BroadcastRing, events: Int, batch: Int) {
        if batch == 1 {
            for i in 1...events { ring.publish(benchEvent(SubjectID(i & 1023), Int64(i))) }
            return
        }
        var i = 1
        while i <= events {
            let base = i
            i += ring.publishBatch(count: min(batch, events - i + 1)) { b in
                for k in 0..<b.count { b[k] = benchEvent(SubjectID((base + k) & 1023), Int64(base + k)) }
            }
        }
    }

    /// The plain SPSC ring baseline, pinned like the ring: events per second delivered.
    static func plainSPSC(events: Int, batch: Int) -> Double {
        let q = PlainSPSCRing(capacity: ringCapacity)
        let sum = BenchBox<Int64>(0)
        let reader = BenchThread(cpu: consumerCPU) {
            var s: Int64 = 0, spins = 0
            while true {
                let n = q.poll { s &+= $0.a }
                if n < 0 { break }
                if n == 0 { spins += 1; if spins > 256 { sched_yield() } } else { spins = 0 }
            }
            sum.set(s)
        }
        return pinnedRate(events: events, reader: reader, sum: sum, "plain SPSC baseline") {
            var i = 1
            while i <= events {
                let m = min(batch, events - i + 1), base = i
                q.publish(count: m) { k in benchEvent(SubjectID((base + k) & 1023), Int64(base + k)) }
                i += m
            }
            q.close()
        }
    }

    static func dequeSPSC(events: Int, batch: Int) -> Double {
        let q = LockedDequeQueue(capacity: ringCapacity)
        let sum = BenchBox<Int64>(0)
        let reader = BenchThread(cpu: consumerCPU) {
            var s: Int64 = 0
            let buffer = UnsafeMutableBufferPointer<Event>.allocate(capacity: 1024)
            defer { buffer.deallocate() }
            while true {
                let n = q.pop(into: buffer, park: false)
                if n < 0 { break }
                for k in 0..<n { s &+= buffer[k].a }
                if n == 0 { sched_yield() }
            }
            sum.set(s)
        }
        return pinnedRate(events: events, reader: reader, sum: sum, "deque baseline") {
            if batch == 1 {
                for i in 1...events { q.push(benchEvent(SubjectID(i & 1023), Int64(i))) }
            } else {
                let staging = UnsafeMutableBufferPointer<Event>.allocate(capacity: batch)
                defer { staging.deallocate() }
                var i = 1
                while i <= events {
                    let m = min(batch, events - i + 1)
                    for k in 0..<m { staging[k] = benchEvent(SubjectID((i + k) & 1023), Int64(i + k)) }
                    q.push(UnsafeBufferPointer(rebasing: staging[0..<m]))
                    i += m
                }
            }
            q.close()
        }
    }

    static func asyncStreamSPSC(events: Int) -> Double {
        let (stream, continuation) = AsyncStream<Event>.makeStream(bufferingPolicy: .unbounded)
        let done = DispatchSemaphore(value: 0)
        let sum = BenchBox<Int64>(0)
        Task.detached {
            var s: Int64 = 0
            for await e in stream { s &+= e.a }
            sum.set(s)
            done.signal()
        }
        let t0 = benchNow()
        for i in 1...events { continuation.yield(benchEvent(SubjectID(i & 1023), Int64(i))) }
        continuation.finish()
        done.wait()
        let t1 = benchNow()
        precondition(sum.get == Int64(events) * Int64(events + 1) / 2, "AsyncStream baseline lost events")
        return Double(events) / Double(t1 - t0) * 1e9
    }

    /// libzmq inproc PUB/SUB, one 64-byte frame per event, no high-water mark (nothing dropped).
    static func zmqSPSC(events: Int) throws -> Double {
        let context = ZMQContext()
        defer { context.shutdown() }
        let pub = try context.socket(.pub)
        let sub = try context.socket(.sub)
        defer { sub.close(); pub.close() }
        try pub.setSendHighWaterMark(0)
        try sub.setReceiveHighWaterMark(0)
        let endpoint = "inproc://ring-bench-\(UInt32.random(in: 0...UInt32.max))"
        try pub.bind(endpoint)
        try sub.connect(endpoint)
        try sub.subscribe("")
        try awaitSubscription(pub: pub, sub: sub)
        let received = BenchBox<Int>(0)
        let reader = BenchThread {
            var msg = ZMQMessage()
            var count = 0
            while (try? msg.receive(from: sub)) == true {
                if msg.count != 64 { break }
                count += 1
            }
            received.set(count)
        }
        let t0 = benchNow()
        var e = benchEvent(1, 0)
        for i in 1...events {
            e.a = Int64(i)
            try withUnsafeBytes(of: &e) { try sendFrame(pub, $0) }
        }
        try pub.send([0])
        reader.join()
        let t1 = benchNow()
        precondition(received.get == events, "zmq baseline lost \(events - received.get) events")
        return Double(events) / Double(t1 - t0) * 1e9
    }

    /// Sends until the subscriber sees a probe, so the measured run does not lose its head to the slow joiner.
    static func awaitSubscription(pub: ZMQSocket, sub: ZMQSocket) throws {
        try sub.setReceiveTimeout(milliseconds: 10)
        for _ in 0..<500 {
            try pub.send([1, 2])
            if let m = try sub.receive(), m == [1, 2] { break }
        }
        while (try sub.receive(dontWait: true)) != nil {}
        try sub.setReceiveTimeout(milliseconds: -1)
    }

    static func sendFrame(_ socket: ZMQSocket, _ bytes: UnsafeRawBufferPointer) throws {
        // Untyped wrapper: a typed-throws call inside withUnsafeBytes trips Swift 6.3's SILGen.
        do { try socket.send(bytes) } catch { throw BenchError.failed("zmq send: \(error)") }
    }

    /// One producer, `consumers` ring consumers of `policy` waiting per `wait`; each consumer's delivery rate.
    static func ringFanOut(events: Int, consumers: Int, policy: ConsumerPolicy, wait: WaitStrategy) -> Double {
        let ring = BroadcastRing(capacity: ringCapacity, gapSubject: 0, producerWait: .yield)
        let cs = (0..<consumers).map { ring.addConsumer(name: "c\($0)", policy: policy, wait: wait) }
        let readers = cs.map { c in
            BenchThread {
                var s: Int64 = 0
                while c.poll(maxBatch: 4096, timeoutNanos: nil, { s &+= $0.a }) >= 0 {}
                precondition(s == Int64(events) * Int64(events + 1) / 2, "fan-out consumer lost events")
            }
        }
        let t0 = benchNow()
        publish(ring, events: events, batch: batch)
        ring.close()
        readers.forEach { $0.join() }
        let t1 = benchNow()
        return Double(events) / Double(t1 - t0) * 1e9
    }

    /// Lossy consumers never slow the producer: reports the producer's rate, each consumer's delivered rate
    /// and what fraction it lost (to laps, recovered by GAP).
    static func ringFanOutLossy(events: Int, consumers: Int) -> Result.Lossy {
        let ring = BroadcastRing(capacity: ringCapacity, gapSubject: 0)
        let cs = (0..<consumers).map { ring.addConsumer(name: "c\($0)", policy: .lossy, wait: .yield) }
        let readers = cs.map { c in
            BenchThread {
                while c.poll(maxBatch: 4096, timeoutNanos: nil, { _ in }) >= 0 {}
            }
        }
        let t0 = benchNow()
        publish(ring, events: events, batch: batch)
        let tp = benchNow()
        ring.close()
        readers.forEach { $0.join() }
        let t1 = benchNow()
        let counters = cs.map(\.counters)
        let delivered = counters.map { Double($0.delivered &- $0.resyncs) }   // less the GAP events (no cache here)
        return Result.Lossy(
            producerPerS: (Double(events) / Double(tp - t0) * 1e9).rounded(),
            minDeliveredPerConsumerPerS: (delivered.min()! / Double(t1 - t0) * 1e9).rounded(),
            lostFractionMax: ((counters.map { Double($0.dropped) }.max()! / Double(events)) * 10_000).rounded() / 10_000,
            resyncsTotal: UInt64(counters.reduce(0) { $0 + $1.resyncs }))
    }

    static func dequeFanOut(events: Int, consumers: Int) -> Double {
        let qs = (0..<consumers).map { _ in LockedDequeQueue(capacity: ringCapacity) }
        let readers = qs.map { q in
            BenchThread {
                let buffer = UnsafeMutableBufferPointer<Event>.allocate(capacity: 4096)
                defer { buffer.deallocate() }
                var s: Int64 = 0
                while true {
                    let n = q.pop(into: buffer, park: false)
                    if n < 0 { break }
                    for k in 0..<n { s &+= buffer[k].a }
                    if n == 0 { sched_yield() }
                }
                precondition(s == Int64(events) * Int64(events + 1) / 2, "deque fan-out lost events")
            }
        }
        let staging = UnsafeMutableBufferPointer<Event>.allocate(capacity: batch)
        defer { staging.deallocate() }
        let t0 = benchNow()
        var i = 1
        while i <= events {
            let m = min(batch, events - i + 1)
            for k in 0..<m { staging[k] = benchEvent(1, Int64(i + k)) }
            for q in qs { q.push(UnsafeBufferPointer(rebasing: staging[0..<m])) }
            i += m
        }
        qs.forEach { $0.close() }
        readers.forEach { $0.join() }
        let t1 = benchNow()
        return Double(events) / Double(t1 - t0) * 1e9
    }

    // MARK: - Hop latency

    /// Events published, not timed, before a hop measure: the reader thread is running and has seen events, and
    /// the ring's slots are touched (a fresh ring's first lap page-faults in the producer). Without them the
    /// reader's start-up (milliseconds, while the producer keeps pacing) put a backlog into the first samples.
    /// At least 300 ms of them, too: the first tens of milliseconds after a vCPU wakes into a busy spin here see
    /// interruptions spread over them (a quarter of the samples over 100 µs, in a fresh process's first round).
    static func hopWarmUp(gapNanos: Int64) -> Int { max(ringCapacity + 1_000, Int(300_000_000 / gapNanos)) }

    /// Every hop measure's producer: one event every `gapNanos`, `hopWarmUp` untimed ones (subject 2) and then
    /// `samples` timed ones (subject `timedSubject`), each stamped with the clock as it is sent. Readers record
    /// only the timed subject, so the ring and its baselines are timed alike.
    static let timedSubject: SubjectID = 1
    static func paceHops(samples: Int, gapNanos: Int64, _ send: (Event) throws -> Void) rethrows {
        let warmUp = hopWarmUp(gapNanos: gapNanos)
        var next = benchNow()
        for i in 0..<(warmUp + samples) {
            spinUntil(next)
            try send(benchEvent(i < warmUp ? 2 : timedSubject, benchNow()))
            next += gapNanos
        }
    }

    /// Publishes one event every `gapNanos` stamped with the monotonic clock; the consumer records the delay.
    /// `pinnedToCPUs` puts the producer and the consumer on `producerCPU` and `consumerCPU`, so a spinning side
    /// is never queued behind the other on one core; otherwise the scheduler places them.
    static func ringHop(samples: Int, wait: WaitStrategy, gapNanos: Int64, pinnedToCPUs: Bool = false) -> LatencyRecorder {
        let ring = BroadcastRing(capacity: ringCapacity, gapSubject: 0)
        let c = ring.addConsumer(name: "hop", policy: .blocking, wait: wait)
        let out = BenchBox(LatencyRecorder())
        let reader = BenchThread(cpu: pinnedToCPUs ? consumerCPU : nil) {
            var rec = LatencyRecorder()
            while c.poll(maxBatch: 64, timeoutNanos: nil, { e in
                if e.subjectID == timedSubject { rec.record(benchNow() - e.a) }
            }) >= 0 {}
            out.set(rec)
        }
        func pace() {
            paceHops(samples: samples, gapNanos: gapNanos) { ring.publish($0) }
            ring.close()
        }
        if pinnedToCPUs { pinned(producerCPU, pace) } else { pace() }
        reader.join()
        return out.get
    }

    /// The pinned busy-spin hop and its floor in alternating rounds of `samples / rounds`: interruptions on this
    /// VM come and go over seconds, so measures taken minutes apart are not comparable.
    /// `p99s` has each round's pair of p99s (ring, floor) in ns: whether the ring meets a bound in the rounds
    /// where the machine lets the floor meet it.
    static func pinnedHops(samples: Int, rounds: Int) -> (ring: LatencyRecorder, floor: LatencyRecorder, p99s: [[UInt64]]) {
        var ring = LatencyRecorder(), floor = LatencyRecorder()
        var p99s: [[UInt64]] = []
        let each = max(1_000, samples / max(1, rounds))
        for _ in 0..<max(1, rounds) {
            let r = ringHop(samples: each, wait: .busySpin, gapNanos: 2_000, pinnedToCPUs: true)
            let f = atomicWordHop(samples: each, gapNanos: 2_000)
            ring.histogram.add(r.histogram)
            floor.histogram.add(f.histogram)
            p99s.append([r.p99, f.p99])
        }
        return (ring, floor, p99s)
    }

    /// The floor under any cross-thread hop on this machine, measured like `ringHop` (publish to delivery), pinned
    /// the same way, after the same warm-up: the producer writes its timestamp into the next element of a plain
    /// array and publishes the element's index in one atomic word; the consumer spins on that word and reads every
    /// stamp up to it. No slot wrap, no cursor going back, no gating, no batch: the least a lossless hand-off
    /// between two threads can cost here, and what the VM's interruptions do to it.
    static func atomicWordHop(samples: Int, gapNanos: Int64) -> LatencyRecorder {
        final class Word: Sendable { let index = Atomic<Int>(-1) }
        let word = Word()
        let warmUp = Self.hopWarmUp(gapNanos: gapNanos)
        let total = warmUp + samples
        nonisolated(unsafe) let stamps = UnsafeMutablePointer<Int64>.allocate(capacity: total)
        defer { stamps.deallocate() }
        stamps.initialize(repeating: 0, count: total)   // touched up front, as the ring's slots are by the warm-up
        let out = BenchBox(LatencyRecorder())
        let reader = BenchThread(cpu: consumerCPU) {
            var rec = LatencyRecorder()
            var last = -1
            while last < total - 1 {
                let i = word.index.load(ordering: .acquiring)
                if i == last { tw_cpu_relax(); continue }
                let now = benchNow()
                for k in (last + 1)...i where k >= warmUp { rec.record(now - stamps[k]) }
                last = i
            }
            out.set(rec)
        }
        pinned(producerCPU) {
            var i = 0
            paceHops(samples: samples, gapNanos: gapNanos) { e in
                stamps[i] = e.a
                word.index.store(i, ordering: .releasing)
                i += 1
            }
        }
        reader.join()
        return out.get
    }

    static func dequeHop(samples: Int, park: Bool, gapNanos: Int64) -> LatencyRecorder {
        let q = LockedDequeQueue(capacity: ringCapacity)
        let out = BenchBox(LatencyRecorder())
        let reader = BenchThread {
            var rec = LatencyRecorder()
            let buffer = UnsafeMutableBufferPointer<Event>.allocate(capacity: 64)
            defer { buffer.deallocate() }
            while true {
                let n = q.pop(into: buffer, park: park)
                if n < 0 { break }
                let now = benchNow()
                for k in 0..<n where buffer[k].subjectID == timedSubject { rec.record(now - buffer[k].a) }
            }
            out.set(rec)
        }
        paceHops(samples: samples, gapNanos: gapNanos) { q.push($0) }
        q.close()
        reader.join()
        return out.get
    }

    static func asyncStreamHop(samples: Int, gapNanos: Int64) -> LatencyRecorder {
        let (stream, continuation) = AsyncStream<Event>.makeStream(bufferingPolicy: .unbounded)
        let done = DispatchSemaphore(value: 0)
        let out = BenchBox(LatencyRecorder())
        Task.detached {
            var rec = LatencyRecorder()
            for await e in stream where e.subjectID == timedSubject { rec.record(benchNow() - e.a) }
            out.set(rec)
            done.signal()
        }
        paceHops(samples: samples, gapNanos: gapNanos) { continuation.yield($0) }
        continuation.finish()
        done.wait()
        return out.get
    }

    static func zmqHop(samples: Int, gapNanos: Int64) throws -> LatencyRecorder {
        let context = ZMQContext()
        defer { context.shutdown() }
        let pub = try context.socket(.pub)
        let sub = try context.socket(.sub)
        defer { sub.close(); pub.close() }
        let endpoint = "inproc://ring-hop-\(UInt32.random(in: 0...UInt32.max))"
        try pub.bind(endpoint)
        try sub.connect(endpoint)
        try sub.subscribe("")
        try awaitSubscription(pub: pub, sub: sub)
        let out = BenchBox(LatencyRecorder())
        let reader = BenchThread {
            var rec = LatencyRecorder()
            var msg = ZMQMessage()
            while (try? msg.receive(from: sub)) == true {
                if msg.count != 64 { break }
                let e = msg.withUnsafeBytes { $0.loadUnaligned(as: Event.self) }
                if e.subjectID == timedSubject { rec.record(benchNow() - e.a) }
            }
            out.set(rec)
        }
        try paceHops(samples: samples, gapNanos: gapNanos) { e in
            var e = e
            try withUnsafeBytes(of: &e) { try sendFrame(pub, $0) }
        }
        try pub.send([0])
        reader.join()
        return out.get
    }
}
