import Foundation
import Synchronization
import Testing
import TickwireCore
@testable import TickwireRing

@Suite(.serialized, .timeLimit(.minutes(5)))
struct BroadcastRingTests {
    static let gapSubject: SubjectID = 999

    @Test func sequencesStartAtOneAndConsumersSeeEventsInOrder() {
        let ring = BroadcastRing(capacity: 16, gapSubject: Self.gapSubject)
        let consumer = ring.addConsumer(name: "c", policy: .blocking, wait: .yield)
        #expect(ring.capacity == 16)
        #expect(ring.publish(quote(1, 10)) == 1)
        #expect(ring.publish(quote(2, 20)) == 2)
        var got: [Event] = []
        #expect(consumer.poll(maxBatch: 10, timeoutNanos: 0) { got.append($0) } == 2)
        #expect(got.map(\.seq) == [1, 2])
        #expect(got.map(\.a) == [10, 20])
        #expect(got.map(\.subjectID) == [1, 2])
        #expect(consumer.poll(maxBatch: 10, timeoutNanos: 1_000_000) { _ in } == 0)
        #expect(consumer.counters.delivered == 2)
        #expect(consumer.counters.lag == 0)
    }

    /// The control words are where the drawing in BroadcastRing.swift puts them, and the layout's rules hold.
    @Test func controlWordsAreWhereTheDrawingPutsThem() {
        #expect(BroadcastRing.layoutIsValid)
        let words = Dictionary(uniqueKeysWithValues: BroadcastRing.layout.map { ($0.name, $0.word) })
        #expect(words == ["published": 0, "parked": 16, "wakeEpoch": 17, "napEpoch": 18, "missedWakes": 19, "closed": 32, "gatingEpoch": 33,
                          "unguardedReaders": 34, "gate": 48, "seenGatingEpoch": 49, "stalls": 50, "next": 51,
                          "claimed": 64,
                          "cell.cursor": 80, "cell.state": 81, "cell.producerWaiting": 82, "cell.stalls": 83,
                          "cell.delivered": 84, "cell.dropped": 85, "cell.resyncs": 86])
        #expect(BroadcastRing.wordsPerLine * 8 == 128)
        let ring = BroadcastRing(capacity: 16, gapSubject: 0, maxConsumers: 3)
        #expect(ring.control.count == 80 + 3 * 16)
        #expect(ring.cellWord(2, BroadcastRing.cellResyncs) == 80 + 2 * 16 + 6)
    }

    @Test func capacityRoundsUpToAPowerOfTwo() {
        #expect(BroadcastRing(capacity: 100, gapSubject: 0).capacity == 128)
    }

    @Test func batchPublishStampsConsecutiveSequencesAndMaxBatchBoundsAPoll() {
        let ring = BroadcastRing(capacity: 64, gapSubject: Self.gapSubject)
        let consumer = ring.addConsumer(name: "c", policy: .lossy, wait: .busySpin)
        let n = ring.publishBatch(count: 10) { buffer in
            for i in 0..<buffer.count { buffer[i] = quote(SubjectID(i), Int64(i)) }
        }
        #expect(n == 10)
        #expect(ring.publishedSequence == 10)
        var seqs: [UInt64] = []
        #expect(consumer.poll(maxBatch: 4, timeoutNanos: 0) { seqs.append($0.seq) } == 4)
        #expect(consumer.poll(maxBatch: 100, timeoutNanos: 0) { seqs.append($0.seq) } == 6)
        #expect(seqs == Array(1...10))
    }

    @Test func aConsumerStartsAtTheNextPublishedSequence() {
        let ring = BroadcastRing(capacity: 16, gapSubject: Self.gapSubject)
        ring.publish(quote(1, 1)); ring.publish(quote(1, 2))
        let late = ring.addConsumer(name: "late", policy: .blocking, wait: .yield)
        ring.publish(quote(1, 3))
        var seqs: [UInt64] = []
        _ = late.poll(maxBatch: 10, timeoutNanos: 0) { seqs.append($0.seq) }
        #expect(seqs == [3])
    }

    @Test(arguments: [WaitStrategy.busySpin, .yield, .park, .sleep(nanoseconds: 20_000)])
    func blockingConsumersLoseNothingAndSeeOrder(wait: WaitStrategy) {
        let ring = BroadcastRing(capacity: 64, gapSubject: Self.gapSubject, producerWait: wait)
        let total = 30_000
        let consumers = (0..<2).map { ring.addConsumer(name: "c\($0)", policy: .blocking, wait: wait == .busySpin ? .yield : wait) }
        let failures = Shared(0)
        let readers = consumers.map { c in
            TestThread {
                var expected: UInt64 = 1
                var bad = 0
                while true {
                    let n = c.poll(maxBatch: 32, timeoutNanos: nil) { e in
                        if e.seq != expected || e.a != Int64(e.seq) || !isIntact(e) { bad += 1 }
                        expected = e.seq + 1
                    }
                    if n < 0 { break }
                }
                if expected != UInt64(total) + 1 { bad += 1 }
                failures.with { $0 += bad }
            }
        }
        var i = 1
        while i <= total {
            if i % 3 == 0 {
                let n = min(17, total - i + 1)
                let base = i
                i += ring.publishBatch(count: n) { b in for k in 0..<b.count { b[k] = quote(SubjectID(k % 8), Int64(base + k)) } }
            } else {
                ring.publish(quote(SubjectID(i % 8), Int64(i))); i += 1
            }
        }
        ring.close()
        readers.forEach { $0.join() }
        #expect(failures.get == 0)
        for c in consumers {
            #expect(c.counters.delivered == UInt64(total))
            #expect(c.counters.dropped == 0)
            #expect(c.counters.resyncs == 0)
        }
    }

    /// The shape of a hang seen once in CI: a small ring, two blocking consumers and the producer all parking, the
    /// producer pausing now and then so that the consumers catch up and park while it publishes. Each sleep that
    /// runs to its backstop although what it waited for had come is a lost wake-up (`missedWakes`). Two were
    /// possible: a consumer registered as parked could have its registration taken by a wake for an event it had
    /// already read and then sleep on the epoch that wake had moved to; and a consumer could clear the producer's
    /// waiting flag for a cursor the producer had already seen, as the producer was going to sleep on that cursor.
    /// The windows are nanoseconds wide; random pauses at the racing points of one side (`BroadcastRing.failPoint`)
    /// make them wide enough to fail in seconds. Before the fixes, in every run and both fence modes: 17-25 lost
    /// wakes in 2 s for the consumers' park, 1-7 for the producer's gate.
    @Test(arguments: [ParkingSide.consumers, .producer], [true, false])
    func parkedSidesNeverSleepThroughAWake(side: ParkingSide, asymmetricFences: Bool) {
        let sites: [BroadcastRing.FailPoint] = side == .consumers ? [.wakingConsumers, .consumerRegistered]
                                                                  : [.cursorStored, .producerRegistered]
        let ring = BroadcastRing(capacity: side == .consumers ? 16 : 8, gapSubject: Self.gapSubject, producerWait: .park,
                                 asymmetricFences: asymmetricFences)
        ring.failPoint = { site in
            guard sites.contains(site) else { return }
            let until = monotonicNanos() + Int64.random(in: 0...30_000)
            while monotonicNanos() < until { relax() }
        }
        let consumers = (0..<2).map { ring.addConsumer(name: "c\($0)", policy: .blocking, wait: .park) }
        let readers = consumers.map { c in
            TestThread { while c.poll(maxBatch: side == .consumers ? 8 : 2, timeoutNanos: nil, { _ in }) >= 0 {} }
        }
        let end = monotonicNanos() + 2_000_000_000
        var published = 0
        while monotonicNanos() < end {
            for _ in 0..<Int.random(in: 1...40) { ring.publish(quote(1, 1)); published += 1 }
            if side == .producer { continue }   // always gated: the producer's side is its wait for a slot
            if Bool.random() { sched_yield() } else { for _ in 0..<Int.random(in: 0...2_000) { relax() } }
        }
        ring.close()
        readers.forEach { $0.join() }
        #expect(ring.missedWakes == 0, "\(ring.missedWakes) lost wake-ups in \(published) events")
        for c in consumers { #expect(c.counters.delivered == UInt64(published)) }
    }

    enum ParkingSide: Sendable { case consumers, producer }

    @Test func aSlowBlockingConsumerStallsTheProducerAndTheStallIsCounted() {
        let ring = BroadcastRing(capacity: 8, gapSubject: Self.gapSubject, producerWait: .park)
        let c = ring.addConsumer(name: "store", policy: .blocking, wait: .park)
        let reader = TestThread {
            var seen = 0
            while c.poll(maxBatch: 4, timeoutNanos: nil, { _ in seen += 1 }) >= 0 { usleep(50) }
        }
        for i in 1...200 { ring.publish(quote(1, Int64(i))) }
        ring.close()
        reader.join()
        #expect(c.counters.delivered == 200)
        #expect(c.counters.stalls > 0)
        #expect(ring.producerStalls == c.counters.stalls)
    }

    @Test func aLappedLossyConsumerGetsTheExactGapThenTheLastValuesThenContinues() {
        let lvc = LastValueCache(maxSubjects: 16)
        let ring = BroadcastRing(capacity: 8, gapSubject: Self.gapSubject, lastValues: lvc)
        let c = ring.addConsumer(name: "trader", policy: .lossy, wait: .yield)
        ring.publish(quote(1, 1))
        var got: [Event] = []
        #expect(c.poll(maxBatch: 100, timeoutNanos: 0) { got.append($0) } == 1)
        // 2...30: three subjects of quotes, a trade and a status on subject 4.
        for i in 2...30 {
            if i == 10 {
                ring.publish(Event.trade(4, price: Price(e8: 500), size: Quantity(e8: 1), side: .buy, tradeID: 77,
                                         eventTime: Nanos(10), knownTime: Nanos(10)))
            } else if i == 11 {
                ring.publish(Event.status(4, Status(category: .trading, state: UInt8(ascii: "H"), reason: "LUDP"),
                                          eventTime: Nanos(11), knownTime: Nanos(11)))
            } else {
                ring.publish(quote(SubjectID(i % 3 + 1), Int64(i)))
            }
        }
        got = []
        let n = c.poll(maxBatch: 2, timeoutNanos: 0) { got.append($0) }
        #expect(n == got.count)
        let gap = got[0]
        #expect(gap.kind == .gap)
        #expect(gap.subjectID == Self.gapSubject)
        #expect(gap.gapBody == Gap(first: 2, last: 30, scope: .publisher))
        // Latest value per (subject, kind) as of 30: quotes 30 (subject 1), 28 (2), 29 (3); trade and status on 4.
        let resync = got.dropFirst()
        #expect(resync.count == 5)   // quotes on 1, 2, 3; the trade and the status on 4
        let bySubjectKind = Dictionary(uniqueKeysWithValues: resync.map { ("\($0.subjectID)/\($0.kind)", $0) })
        #expect(bySubjectKind["1/QUOTE"]?.seq == 30)
        #expect(bySubjectKind["2/QUOTE"]?.seq == 28)
        #expect(bySubjectKind["3/QUOTE"]?.seq == 29)
        #expect(bySubjectKind["4/TRADE"]?.trade == Trade(price: Price(e8: 500), size: Quantity(e8: 1), side: .buy, tradeID: 77))
        #expect(bySubjectKind["4/TRADE"]?.seq == 10)
        #expect(bySubjectKind["4/STATUS"]?.status.reason == "LUDP")
        for e in resync where e.kind == .quote { #expect(isIntact(e) && e.a == Int64(e.seq)) }
        #expect(c.counters.dropped == 29)
        #expect(c.counters.resyncs == 1)
        // And it continues with the next sequence.
        ring.publish(quote(1, 31))
        got = []
        #expect(c.poll(maxBatch: 10, timeoutNanos: 0) { got.append($0) } == 1)
        #expect(got.map(\.seq) == [31])
    }

    @Test func aLossyConsumerWithoutACacheGetsTheGapAlone() {
        let ring = BroadcastRing(capacity: 4, gapSubject: Self.gapSubject)
        let c = ring.addConsumer(name: "t", policy: .lossy, wait: .busySpin)
        for i in 1...9 { ring.publish(quote(1, Int64(i))) }
        var got: [Event] = []
        #expect(c.poll(maxBatch: 10, timeoutNanos: 0) { got.append($0) } == 1)
        #expect(got.first?.gapBody == Gap(first: 1, last: 9, scope: .publisher))
    }

    /// A slow lossy consumer racing a fast producer: every sequence is either delivered once, in order, or
    /// named by exactly one GAP; every resync entry is intact and no newer than its gap.
    @Test func aLossyConsumerRacingTheProducerAccountsForEverySequence() {
        let subjects = 16
        let lvc = LastValueCache(maxSubjects: subjects)
        let ring = BroadcastRing(capacity: 64, gapSubject: Self.gapSubject, lastValues: lvc)
        let c = ring.addConsumer(name: "slow", policy: .lossy, wait: .yield)
        let total = 300_000
        let result = Shared((delivered: 0, lost: 0, gaps: 0, bad: [String]()))
        let reader = TestThread {
            var expected: UInt64 = 1
            var delivered = 0, lost = 0, gaps = 0
            var bad: [String] = []
            var resyncUpTo: UInt64 = 0
            var resyncSubjects = Set<SubjectID>()
            var k = 0
            while true {
                let n = c.poll(maxBatch: 16, timeoutNanos: nil) { e in
                    if e.kind == .gap {
                        let g = e.gapBody
                        if g.first != expected || g.last < g.first { bad.append("gap \(g.first)...\(g.last), expected \(expected)") }
                        lost += Int(g.count); gaps += 1
                        expected = g.last + 1
                        resyncUpTo = g.last
                        resyncSubjects = []
                    } else if e.seq < expected {
                        // A resync entry: as of the gap's end, intact, the latest of its subject by then.
                        if e.seq > resyncUpTo || !isIntact(e) || e.a != Int64(e.seq) || e.seq + UInt64(subjects) <= resyncUpTo
                            || !resyncSubjects.insert(e.subjectID).inserted {
                            bad.append("resync entry seq \(e.seq) subject \(e.subjectID) after gap ending \(resyncUpTo)")
                        }
                    } else {
                        if e.seq != expected || !isIntact(e) || e.a != Int64(e.seq) { bad.append("seq \(e.seq), expected \(expected)") }
                        delivered += 1
                        expected = e.seq + 1
                    }
                }
                if n < 0 { break }
                k += 1
                // Fall behind now and then: off the CPU, so that the producer laps the ring whatever the
                // scheduler does (a spin could run beside a descheduled producer and never be lapped; seen
                // under the thread sanitizer).
                if k % 64 == 0 { usleep(200) }
            }
            result.with { $0 = (delivered, lost, gaps, Array(bad.prefix(5))) }
        }
        for i in 1...total { ring.publish(quote(SubjectID(i % subjects), Int64(i))) }
        ring.close()
        reader.join()
        let r = result.get
        #expect(r.bad.isEmpty, "\(r.bad)")
        #expect(r.delivered + r.lost == total)
        #expect(r.gaps > 0, "the consumer was never lapped: the test proved nothing")
        #expect(c.counters.dropped == UInt64(r.lost))
        #expect(c.counters.resyncs == UInt64(r.gaps))
    }

    @Test func pollTimesOutOnAQuietRing() {
        let ring = BroadcastRing(capacity: 16, gapSubject: Self.gapSubject)
        let c = ring.addConsumer(name: "p", policy: .lossy, wait: .park)
        let t0 = DispatchTime.now().uptimeNanoseconds
        #expect(c.poll(maxBatch: 1, timeoutNanos: 20_000_000) { _ in } == 0)
        #expect(DispatchTime.now().uptimeNanoseconds - t0 >= 19_000_000)
    }

    /// A parked consumer sleeps in the kernel while the ring is quiet (it burns no CPU: a `.park` that spun or
    /// yielded instead would burn most of the wait) and the producer's next publish wakes it at once (well
    /// before its 5 s timeout), each time.
    @Test func parkedConsumersSleepUntilAPublishWakesThem() {
        let ring = BroadcastRing(capacity: 16, gapSubject: Self.gapSubject)
        let c = ring.addConsumer(name: "p", policy: .lossy, wait: .park)
        let quietNanos: UInt64 = 300_000_000
        let got = Shared([(seq: UInt64, cpuNanos: Int64, returnedAt: UInt64)]())
        let reader = TestThread {
            while true {
                let cpu0 = threadCPUNanos()
                var seqs: [UInt64] = []
                let n = c.poll(maxBatch: 8, timeoutNanos: 5_000_000_000) { seqs.append($0.seq) }
                let returnedAt = DispatchTime.now().uptimeNanoseconds
                if n < 0 { break }
                let cpu = threadCPUNanos() - cpu0
                got.with { for s in seqs { $0.append((s, cpu, returnedAt)) } }
            }
        }
        var publishedAt: [UInt64] = []
        for i in 1...2 {
            usleep(UInt32(quietNanos / 1000))   // the reader is parked by now
            publishedAt.append(DispatchTime.now().uptimeNanoseconds)
            ring.publish(quote(1, Int64(i)))
            // The reader takes it before the next quiet spell starts.
            let deadline = DispatchTime.now().uptimeNanoseconds + 10_000_000_000
            while got.get.count < i && DispatchTime.now().uptimeNanoseconds < deadline { usleep(1_000) }
        }
        ring.close()
        reader.join()
        let r = got.get
        #expect(r.map(\.seq) == [1, 2])
        for (i, e) in r.enumerated() where i < publishedAt.count {
            let wakeNanos = e.returnedAt &- publishedAt[i]
            #expect(wakeNanos < 2_000_000_000, "event \(e.seq) reached the parked reader \(wakeNanos / 1_000_000) ms after it was published")
            // Spinning or yielding through the quiet spell costs ~100+ ms of CPU even on a loaded two-vCPU
            // machine; parking costs the 256 spins before the futex wait and the wake-up.
            #expect(e.cpuNanos < 30_000_000, "the reader burned \(e.cpuNanos / 1_000_000) ms of CPU waiting \(quietNanos / 1_000_000) ms for event \(e.seq): it did not park")
        }
    }

    @Test func closeLetsConsumersDrainThenReturnsMinusOne() {
        let ring = BroadcastRing(capacity: 16, gapSubject: Self.gapSubject)
        let c = ring.addConsumer(name: "c", policy: .blocking, wait: .park)
        for i in 1...5 { ring.publish(quote(1, Int64(i))) }
        ring.close()
        var n = 0
        #expect(c.poll(maxBatch: 3, timeoutNanos: nil) { _ in n += 1 } == 3)
        #expect(c.poll(maxBatch: 3, timeoutNanos: nil) { _ in n += 1 } == 2)
        #expect(c.poll(maxBatch: 3, timeoutNanos: nil) { _ in n += 1 } == -1)
        #expect(n == 5)
    }

    @Test func multipleProducersInterleaveButEachStaysInOrder() {
        let ring = BroadcastRing(capacity: 64, producers: .multi, gapSubject: Self.gapSubject, producerWait: .yield)
        let c = ring.addConsumer(name: "all", policy: .blocking, wait: .yield)
        let perProducer = 20_000
        let result = Shared((count: 0, bad: 0))
        let reader = TestThread {
            var last = [Int64](repeating: 0, count: 2)
            var expected: UInt64 = 1
            var count = 0, bad = 0
            while c.poll(maxBatch: 64, timeoutNanos: nil, { e in
                let p = Int(e.subjectID)
                if e.seq != expected || e.a <= last[p] || !isIntact(e) { bad += 1 }
                last[p] = e.a; expected = e.seq + 1; count += 1
            }) >= 0 {}
            result.with { $0 = (count, bad) }
        }
        let producers = (0..<2).map { p in
            TestThread {
                var i = 1
                while i <= perProducer {
                    if i % 5 == 0 {
                        let base = i
                        i += ring.publishBatch(count: min(7, perProducer - i + 1)) { b in
                            for k in 0..<b.count { b[k] = quote(SubjectID(p), Int64(base + k)) }
                        }
                    } else {
                        ring.publish(quote(SubjectID(p), Int64(i))); i += 1
                    }
                }
            }
        }
        producers.forEach { $0.join() }
        ring.close()
        reader.join()
        #expect(result.get.count == 2 * perProducer)
        #expect(result.get.bad == 0)
    }

    /// Consumers of both policies come and go while the producer runs; each sees a gapless run from where it
    /// started (blocking) or accounts for every sequence (lossy), and the producer never waits on a removed one.
    @Test func consumersSubscribeAndUnsubscribeUnderLoad() {
        let ring = BroadcastRing(capacity: 128, gapSubject: Self.gapSubject, producerWait: .yield)
        let stop = Atomic<Bool>(false)
        let bad = Shared([String]())
        let churn = (0..<2).map { t in
            TestThread {
                var round = 0
                while !stop.load(ordering: .relaxed) && round < 400 {
                    round += 1
                    let policy: ConsumerPolicy = (round + t) % 2 == 0 ? .blocking : .lossy
                    let c = ring.addConsumer(name: "churn\(t)-\(round)", policy: policy, wait: .yield)
                    var expected = c.nextSequence
                    for _ in 0..<(1 + round % 5) {
                        let n = c.poll(maxBatch: 64, timeoutNanos: 2_000_000) { e in
                            if let problem = follow(e, &expected, "\(policy)") { bad.with { $0.append(problem) } }
                        }
                        if n < 0 { break }
                    }
                    ring.removeConsumer(c)
                    #expect(c.poll(maxBatch: 1, timeoutNanos: nil) { _ in } == -1)
                }
            }
        }
        var i: Int64 = 0
        var rowsSeen = 0
        let deadline = DispatchTime.now().uptimeNanoseconds + 1_500_000_000
        while DispatchTime.now().uptimeNanoseconds < deadline {
            for _ in 0..<1000 { i += 1; ring.publish(quote(1, i)) }
            // What `tickwire stats` would show now: at most one consumer per churn thread, each under the name
            // and policy it was attached with.
            let rows = ring.consumerStats()
            rowsSeen += rows.count
            if rows.count > 2 { bad.with { if $0.count < 10 { $0.append("\(rows.count) consumers listed, at most 2 attached: \(rows.map(\.name))") } } }
            for row in rows {
                let parts = row.name.dropFirst("churn".count).split(separator: "-").compactMap { Int($0) }
                guard row.name.hasPrefix("churn"), parts.count == 2 else {
                    bad.with { if $0.count < 10 { $0.append("unknown consumer listed: '\(row.name)'") } }
                    continue
                }
                let policy: ConsumerPolicy = (parts[1] + parts[0]) % 2 == 0 ? .blocking : .lossy
                if row.policy != policy { bad.with { if $0.count < 10 { $0.append("'\(row.name)' listed as \(row.policy), attached \(policy)") } } }
            }
            if i >= 2_000_000 { break }
        }
        stop.store(true, ordering: .relaxed)
        churn.forEach { $0.join() }
        ring.close()
        #expect(bad.get.isEmpty, "\(bad.get.prefix(5))")
        #expect(ring.consumerStats().isEmpty)
        #expect(i > 0)
        #expect(rowsSeen > 0, "no consumer was ever listed: the check above proved nothing")
    }

    /// A sleeping consumer is never woken for events (it finds them at its next look, here an hour away), not even
    /// when the publish wakes a parked consumer beside it, but `close` and `removeConsumer` wake it at once,
    /// however long its sleep.
    @Test func sleepingConsumersWakeForCloseAndRemovalNotForEvents() {
        let ring = BroadcastRing(capacity: 64, gapSubject: Self.gapSubject)
        let hour = WaitStrategy.sleep(nanoseconds: 3_600_000_000_000)
        let closing = ring.addConsumer(name: "closing", policy: .blocking, wait: hour)
        let removed = ring.addConsumer(name: "removed", policy: .lossy, wait: hour)
        let parked = ring.addConsumer(name: "parked", policy: .blocking, wait: .park)
        let handed = Shared<[String: Int]>([:])
        let results = Shared<[String: Double]>([:])
        func waiter(_ c: RingConsumer, _ timeout: Int64?) -> TestThread {
            TestThread {
                let t0 = Date()
                while true {
                    let n = c.poll(maxBatch: 64, timeoutNanos: timeout) { _ in handed.with { $0[c.name, default: 0] += 1 } }
                    if n <= 0 { break }
                }
                results.with { $0[c.name] = Date().timeIntervalSince(t0) }
            }
        }
        let a = waiter(closing, nil), b = waiter(removed, nil), c = waiter(parked, nil)
        usleep(50_000)                     // all three asleep
        _ = ring.publish(quote(1, 1))
        _ = ring.publish(quote(1, 2))
        usleep(200_000)                    // a sleeper woken by the publish would have taken them by now
        let beforeWaking = handed.get
        #expect(beforeWaking == ["parked": 2], "only the parked consumer is woken for events: \(beforeWaking)")
        ring.removeConsumer(removed)
        b.join()
        ring.close()
        a.join()
        c.join()
        let r = results.get
        #expect(r["removed"] ?? 99 < 5)
        #expect(r["closing"] ?? 99 < 5)
        #expect(handed.get["closing"] == 2, "close drains what was published")
    }

    /// Where `fill` writes: the claimed slots themselves while no lossy consumer is attached and the batch does
    /// not wrap, else the staging buffer; every batch reaches the consumer stamped and intact either way.
    @Test func batchesFillSlotsInPlaceUnlessTheyWrapOrALossyConsumerIsAttached() {
        let ring = BroadcastRing(capacity: 16, gapSubject: Self.gapSubject)
        let c = ring.addConsumer(name: "c", policy: .blocking, wait: .yield)
        var placements: [Bool] = []   // per batch: filled in place
        var expected: UInt64 = 1
        var bad: [String] = []
        func publish(_ n: Int) {
            let first = ring.publishedSequence + 1
            let slot = UnsafeMutableRawPointer(ring.slot(first))
            let published = ring.publishBatch(count: n) { b in
                placements.append(UnsafeMutableRawPointer(b.baseAddress!) == slot)
                for k in 0..<b.count { b[k] = quote(SubjectID(k), Int64(first) + Int64(k)) }
            }
            #expect(published == n)
            #expect(c.poll(maxBatch: 64, timeoutNanos: 0) { e in
                if e.seq != expected || e.a != Int64(e.seq) || !isIntact(e) { bad.append("seq \(e.seq), expected \(expected)") }
                expected = e.seq + 1
            } == n)
        }
        // Sequence s sits in slot s % 16: batches of 4 from sequence 1 fill slots 1-12, then 13-15 and 0-2 wrap.
        for _ in 0..<3 { publish(4) }
        publish(6)
        #expect(placements == [true, true, true, false])
        publish(3)                                        // slots 3-5
        var lossy: RingConsumer? = ring.addConsumer(name: "l", policy: .lossy, wait: .yield)
        publish(3)                                        // staged: a lossy reader may copy slots
        ring.removeConsumer(lossy!)
        publish(3)                                        // still staged: removed but not yet released
        lossy = nil
        publish(3)                                        // in place again
        var removed: RingConsumer? = ring.addConsumer(name: "b", policy: .blocking, wait: .yield)
        ring.removeConsumer(removed!)
        publish(3)                                        // staged: its poll on another thread may be copying
        removed = nil
        publish(3)                                        // in place
        #expect(placements.suffix(6) == [true, false, false, true, false, true])
        #expect(bad.isEmpty, "\(bad.prefix(5))")
        #expect(expected == 37)
    }

    /// A blocking consumer removed by another thread while its poll is inside `body`: the producer stops
    /// waiting for it at once, and the slots the poll goes on to copy are not written in place meanwhile
    /// (ThreadSanitizer reports the race otherwise).
    @Test func removingABlockingConsumerDuringItsPollFreesTheProducer() {
        let ring = BroadcastRing(capacity: 16, gapSubject: Self.gapSubject, producerWait: .yield)
        let c = ring.addConsumer(name: "stuck", policy: .blocking, wait: .yield)
        let inside = Atomic<Bool>(false), removed = Atomic<Bool>(false)
        let reader = TestThread {
            _ = c.poll(maxBatch: 16, timeoutNanos: nil) { _ in
                inside.store(true, ordering: .relaxed)
                while !removed.load(ordering: .relaxed) { sched_yield() }
            }
        }
        var i: Int64 = 0
        func publish() { ring.publishBatch(count: 8) { b in for k in 0..<b.count { i += 1; b[k] = quote(1, i) } } }
        publish(); publish()                              // a full ring: the next batch waits for the reader
        while !inside.load(ordering: .relaxed) { sched_yield() }
        ring.removeConsumer(c)
        for _ in 0..<8 { publish() }                      // laps the stuck poll four times
        removed.store(true, ordering: .relaxed)
        for _ in 0..<8 { publish() }                      // and again while that poll returns
        reader.join()
        #expect(ring.publishedSequence == 144)
        #expect(c.poll(maxBatch: 1, timeoutNanos: 0) { _ in } == -1)
    }

    /// A blocking consumer may remove itself from inside `body`: the removal does not wait on the poll that
    /// called it, the next poll returns -1, and the producer is no longer held back.
    @Test func aBlockingConsumerCanRemoveItselfInsideBody() {
        let ring = BroadcastRing(capacity: 16, gapSubject: Self.gapSubject)
        let c = ring.addConsumer(name: "quitter", policy: .blocking, wait: .yield)
        for i in 1...5 { ring.publish(quote(1, Int64(i))) }
        var seen: [UInt64] = []
        let n = c.poll(maxBatch: 16, timeoutNanos: 0) { e in
            seen.append(e.seq)
            if e.seq == 2 { ring.removeConsumer(c) }
        }
        #expect(n == seen.count)
        #expect(seen.first == 1 && seen.contains(2))
        #expect(c.poll(maxBatch: 16, timeoutNanos: 0) { _ in } == -1)
        for i in 6...40 { ring.publish(quote(1, Int64(i))) }   // no longer gated
        #expect(ring.publishedSequence == 40)
    }

    /// The last-value cache is updated from events filled in place, with their sequences stamped.
    @Test func inPlaceBatchesUpdateTheLastValueCache() {
        let lvc = LastValueCache(maxSubjects: 8)
        let ring = BroadcastRing(capacity: 64, gapSubject: Self.gapSubject, lastValues: lvc)
        let c = ring.addConsumer(name: "c", policy: .blocking, wait: .yield)
        ring.publishBatch(count: 10) { b in
            for k in 0..<b.count { b[k] = quote(SubjectID(k % 3), Int64(k)) }
            b[9] = Event.trade(5, price: Price(e8: 700), size: Quantity(e8: 2), side: .sell, tradeID: 9,
                               eventTime: Nanos(9), knownTime: Nanos(9))
        }
        #expect(lvc.latest(subjectID: 0, kind: .quote)?.seq == 7)
        #expect(lvc.latest(subjectID: 1, kind: .quote)?.seq == 8)
        #expect(lvc.latest(subjectID: 2, kind: .quote)?.seq == 9)
        #expect(lvc.latest(subjectID: 2, kind: .quote)?.a == 8)
        #expect(lvc.latest(subjectID: 5, kind: .trade)?.seq == 10)
        #expect(lvc.latest(subjectID: 5, kind: .trade)?.trade.tradeID == 9)
        #expect(c.poll(maxBatch: 64, timeoutNanos: 0) { _ in } == 10)
    }

    /// Lossy consumers attach, read and go while the producer runs batches through a small ring, switching it
    /// between filling slots in place and storing them word by word: every copy a lossy consumer keeps is
    /// intact and in order (under ThreadSanitizer: no slot is written in place while a lossy reader may copy
    /// it), and the blocking consumer sees every event.
    @Test func lossyConsumersAttachingWhileBatchesFillInPlace() {
        let ring = BroadcastRing(capacity: 64, gapSubject: Self.gapSubject, producerWait: .yield)
        let total = 200_000
        let blocking = ring.addConsumer(name: "all", policy: .blocking, wait: .yield)
        let stop = Atomic<Bool>(false)
        let bad = Shared([String]())
        let delivered = Shared(0)
        let reader = TestThread {
            var expected: UInt64 = 1
            while blocking.poll(maxBatch: 64, timeoutNanos: nil, { e in
                if e.seq != expected || e.a != Int64(e.seq) || !isIntact(e) { bad.with { $0.append("blocking seq \(e.seq), expected \(expected)") } }
                expected = e.seq + 1
            }) >= 0 {}
            delivered.with { $0 = Int(expected - 1) }
        }
        let attachments = Shared(0)
        let churn = TestThread {
            var rounds = 0
            while !stop.load(ordering: .relaxed) {
                rounds += 1
                let c = ring.addConsumer(name: "lossy\(rounds)", policy: .lossy, wait: .yield)
                var expected = c.nextSequence
                for _ in 0..<(1 + rounds % 4) {
                    let n = c.poll(maxBatch: 32, timeoutNanos: 1_000_000) { e in
                        let problem = follow(e, &expected, "lossy") { $0.a == Int64($0.seq) && isIntact($0) }
                        if let problem { bad.with { $0.append(problem) } }
                    }
                    if n < 0 { break }
                }
            }
            attachments.with { $0 = rounds }
        }
        var i = 1
        while i <= total {
            let base = i
            i += ring.publishBatch(count: min(1 + i % 23, total - i + 1)) { b in
                for k in 0..<b.count { b[k] = quote(SubjectID(k % 4), Int64(base + k)) }
            }
        }
        stop.store(true, ordering: .relaxed)
        churn.join()
        ring.close()
        reader.join()
        #expect(bad.get.isEmpty, "\(bad.get.prefix(5))")
        #expect(delivered.get == total)
        #expect(attachments.get > 0)
    }

    @Test func droppingAConsumerReleasesItsCellAndStopsGating() {
        let ring = BroadcastRing(capacity: 4, gapSubject: Self.gapSubject, maxConsumers: 1)
        for _ in 0..<3 {
            var c: RingConsumer? = ring.addConsumer(name: "b", policy: .blocking, wait: .park)
            _ = c
            c = nil
            // With the blocking consumer gone the producer never waits.
            for i in 1...20 { ring.publish(quote(1, Int64(i))) }
        }
        let c = ring.addConsumer(name: "named", policy: .lossy, wait: .park)
        let stats = ring.consumerStats()
        #expect(stats.map(\.name) == ["named"])
        _ = c
    }
}

@inline(never) func tw_spin() { var x = 0; withUnsafeMutablePointer(to: &x) { $0.pointee &+= 1 } }

@Test(.timeLimit(.minutes(5))) func aSourcePushingIntoARingSinkPublishesInOrder() {
    let table = SubjectTable()
    let ring = BroadcastRing(capacity: 8, gapSubject: 0)
    let c = ring.addConsumer(name: "c", policy: .blocking, wait: .busySpin)
    let sink = RingSink(ring: ring, subjects: table)
    let id = sink.subjects.intern(text: "MD.XNAS.AAPL.QUOTE")
    sink.emit(quote(id, 1)); sink.emit(quote(id, 2))
    var got: [Event] = []
    _ = c.poll(maxBatch: 8, timeoutNanos: 0) { got.append($0) }
    #expect(got.map(\.seq) == [1, 2])
    #expect(got.map(\.subjectID) == [id, id])
}
