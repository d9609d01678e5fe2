import Foundation
import Testing
import TickwireCore
@testable import TickwireRing

/// The batch path a producer pays one claim for: `publish(contentsOf:)` and the collecting `RingSink`, on both
/// producer modes.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct BatchPublishTests {
    static let gapSubject: SubjectID = 999

    /// Batches of 1 to 13 events from the producer's own buffer into a 16-slot ring (at most 8 a call), past a
    /// blocking consumer that sleeps between polls: every batch wraps sooner or later and waits for the consumer,
    /// and the consumer still sees every event once, in order, intact, and the cache holds each subject's last.
    @Test(arguments: [ProducerMode.single, .multi])
    func batchesWrapAndWaitForASlowBlockingConsumer(_ mode: ProducerMode) {
        let lvc = LastValueCache(maxSubjects: 8)
        let ring = BroadcastRing(capacity: 16, producers: mode, gapSubject: Self.gapSubject, lastValues: lvc, producerWait: .park)
        let c = ring.addConsumer(name: "slow", policy: .blocking, wait: .park)
        let total = 5_000
        let result = Shared((count: 0, bad: [String]()))
        let reader = TestThread {
            var expected: UInt64 = 1, count = 0
            var bad: [String] = []
            var polls = 0
            while c.poll(maxBatch: 5, timeoutNanos: nil, { e in
                if e.seq != expected || e.a != Int64(e.seq) || !isIntact(e) || e.subjectID != SubjectID(e.a % 8) {
                    bad.append("seq \(e.seq) a \(e.a), expected \(expected)")
                }
                expected = e.seq + 1; count += 1
            }) >= 0 {
                polls += 1
                if polls % 8 == 0 { usleep(20) }
            }
            result.with { $0 = (count, Array(bad.prefix(5))) }
        }
        let buffer = UnsafeMutableBufferPointer<Event>.allocate(capacity: 13)
        defer { buffer.deallocate() }
        var next = 1, size = 1
        while next <= total {
            let n = min(size, total - next + 1)
            for k in 0..<n { buffer[k] = quote(SubjectID((next + k) % 8), Int64(next + k)) }
            var done = 0
            while done < n {
                let m = ring.publish(contentsOf: UnsafeBufferPointer(rebasing: buffer[done..<n]))
                #expect(m == min(n - done, ring.maxPublishBatch))
                done += m
            }
            next += n
            size = size % 13 + 1
        }
        ring.close()
        reader.join()
        let r = result.get
        #expect(r.bad.isEmpty, "\(r.bad)")
        #expect(r.count == total)
        #expect(ring.producerStalls > 0, "the producer never waited: the test proved nothing")
        for s in 0..<8 {
            let last = total - (total - s) % 8   // the last of 1...total that is s modulo 8
            #expect(lvc.latest(subjectID: SubjectID(s), kind: .quote)?.a == Int64(last))
        }
    }

    /// Three producers batch concurrently into a small `.multi` ring, through `publish(contentsOf:)`, `publishBatch`
    /// and collecting sinks, in batches of seeded random sizes: a blocking consumer sees one gapless sequence with
    /// each producer's events in its order and intact; a lossy one accounts for every sequence.
    @Test func producersBatchingConcurrentlyKeepOneOrder() {
        let seed = UInt64.random(in: 1...UInt64.max)
        let ring = BroadcastRing(capacity: 64, producers: .multi, gapSubject: Self.gapSubject, producerWait: .yield)
        let blocking = ring.addConsumer(name: "all", policy: .blocking, wait: .yield)
        let lossy = ring.addConsumer(name: "lossy", policy: .lossy, wait: .yield)
        let perProducer = 30_000, producers = 3
        let result = Shared((count: 0, bad: [String]()))
        let lossyResult = Shared((accounted: 0, bad: [String]()))
        let reader = TestThread {
            var last = [Int64](repeating: 0, count: producers)
            var expected: UInt64 = 1, count = 0
            var bad: [String] = []
            while blocking.poll(maxBatch: 64, timeoutNanos: nil, { e in
                let p = Int(e.subjectID)
                if e.seq != expected || p >= producers || e.a != last[p] + 1 || !isIntact(e) || e.source != UInt16(p) {
                    bad.append("seq \(e.seq) producer \(p) a \(e.a), expected \(expected)")
                }
                if p < producers { last[p] = e.a }
                expected = e.seq + 1; count += 1
            }) >= 0 {}
            result.with { $0 = (count, Array(bad.prefix(5))) }
        }
        let lossyReader = TestThread {
            var expected: UInt64 = 1, accounted = 0
            var bad: [String] = []
            var polls = 0
            while lossy.poll(maxBatch: 16, timeoutNanos: nil, { e in
                accounted += e.kind == .gap ? Int(e.gapBody.count) : 1   // no cache: a GAP comes alone
                if let why = follow(e, &expected, "lossy", valid: isIntact) { bad.append(why) }
            }) >= 0 {
                polls += 1
                if polls % 32 == 0 { for _ in 0..<500 { tw_spin() } }
            }
            lossyResult.with { $0 = (accounted, Array(bad.prefix(5))) }
        }
        let table = SubjectTable()
        let writers = (0..<producers).map { p in
            TestThread {
                var rng = SeededGenerator(seed: seed &+ UInt64(p))
                let sink = RingSink(ring: ring, subjects: table, source: UInt16(p), collects: true)
                let buffer = UnsafeMutableBufferPointer<Event>.allocate(capacity: 40)
                defer { buffer.deallocate() }
                var i = 1
                while i <= perProducer {
                    let n = min(Int.random(in: 1...40, using: &rng), perProducer - i + 1)
                    for k in 0..<n { var e = quote(SubjectID(p), Int64(i + k)); e.source = UInt16(p); buffer[k] = e }
                    switch i % 3 {
                    case 0:
                        sink.flush()   // what the sink collected goes first
                        var done = 0
                        while done < n { done += ring.publish(contentsOf: UnsafeBufferPointer(rebasing: buffer[done..<n])) }
                    case 1:
                        for k in 0..<n { sink.emit(buffer[k]) }
                        if Bool.random(using: &rng) { sink.flush() }
                    default:
                        sink.emit(batch: UnsafeBufferPointer(rebasing: buffer[0..<n]))
                    }
                    i += n
                }
                sink.flush()
            }
        }
        writers.forEach { $0.join() }
        ring.close()
        reader.join()
        lossyReader.join()
        let r = result.get, l = lossyResult.get
        #expect(r.bad.isEmpty, "seed \(seed): \(r.bad)")
        #expect(r.count == producers * perProducer, "seed \(seed)")
        #expect(l.bad.isEmpty, "seed \(seed): \(l.bad)")
        #expect(l.accounted == producers * perProducer, "seed \(seed)")
    }

    /// A collecting sink holds what `emit` hands it until `flush` or a full batch, stamps its source, and keeps
    /// the order of collected events before a later `emit(batch:)`; a sink that does not collect publishes at once.
    @Test func aCollectingSinkPublishesAtFlushOrAFullBatch() {
        let ring = BroadcastRing(capacity: 1024, producers: .multi, gapSubject: Self.gapSubject)
        let c = ring.addConsumer(name: "c", policy: .blocking, wait: .busySpin)
        let table = SubjectTable()
        let sink = RingSink(ring: ring, subjects: table, source: 7, collects: true)
        #expect(sink.batchLimit == 64)
        for i in 1...3 { sink.emit(quote(1, Int64(i))) }
        #expect(ring.publishedSequence == 0)
        sink.flush()
        #expect(ring.publishedSequence == 3)
        for i in 4...66 { sink.emit(quote(1, Int64(i))) }
        #expect(ring.publishedSequence == 3, "63 collected")
        sink.emit(quote(1, 67))
        #expect(ring.publishedSequence == 67, "the 64th publishes the batch")
        sink.emit(quote(1, 68))
        let tail = [quote(1, 69), quote(1, 70)]
        tail.withUnsafeBufferPointer { sink.emit(batch: $0) }
        #expect(ring.publishedSequence == 70)
        var got: [Event] = []
        while c.poll(maxBatch: 256, timeoutNanos: 0, { got.append($0) }) > 0 {}
        #expect(got.map(\.a) == Array(1...70))
        #expect(got.allSatisfy { $0.source == 7 && $0.a == Int64($0.seq) })

        let direct = RingSink(ring: ring, subjects: table, source: 2)
        direct.emit(quote(1, 71))
        #expect(ring.publishedSequence == 71)
    }
}

/// SplitMix64: a seeded generator, so a failing run's batch sizes can be replayed from the printed seed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
