import Benchmark
import DequeModule
import Foundation
import TickwireCore
import TickwireRing

// The ring and router hot paths, single-threaded so the figures isolate the code, not the scheduler, with
// the allocation count per run (the CI gate: zero mallocs per event). Multi-threaded throughput and latency
// live in `tickwire-bench ring` / `tickwire-bench router`, beside their baselines.
//
// Each run moves `scaledIterations` events; Ring.* and Router.* are measured beside Baseline.* (a Deque
// guarded by a plain lock, and a brute-force pattern matcher) in the same process.

private func quote(_ subject: SubjectID, _ n: Int64) -> Event {
    Event(subjectID: subject, kind: .quote, eventTime: Nanos(n), knownTime: Nanos(n), a: n, b: n, c: n, d: n)
}

private final class LockedDeque: @unchecked Sendable {
    let lock = NSLock()
    var queue = Deque<Event>()
    init() { queue.reserveCapacity(1024) }
}

let benchmarks: @Sendable () -> Void = {
    let config = Benchmark.Configuration(metrics: [.throughput, .wallClock, .mallocCountTotal], scalingFactor: .mega,
                                         maxDuration: .seconds(3))

    Benchmark("Ring.publish.single", configuration: config) { benchmark in
        let ring = BroadcastRing(capacity: 4096, gapSubject: 0)
        let consumer = ring.addConsumer(name: "idle", policy: .lossy, wait: .busySpin)
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations { ring.publish(quote(SubjectID(i & 255), Int64(i))) }
        benchmark.stopMeasurement()
        blackHole(consumer.counters.lag)
    }

    Benchmark("Ring.publishPoll.batch64", configuration: config) { benchmark in
        let lvc = LastValueCache(maxSubjects: 256)
        let ring = BroadcastRing(capacity: 4096, gapSubject: 0, lastValues: lvc)
        let consumer = ring.addConsumer(name: "c", policy: .blocking, wait: .busySpin)
        var sum: Int64 = 0
        let rounds = benchmark.scaledIterations.count / 64
        benchmark.startMeasurement()
        for r in 0..<rounds {
            ring.publishBatch(count: 64) { b in for k in 0..<64 { b[k] = quote(SubjectID(k), Int64(r)) } }
            _ = consumer.poll(maxBatch: 64, timeoutNanos: 0) { sum &+= $0.a }
        }
        benchmark.stopMeasurement()
        blackHole(sum)
    }

    Benchmark("Ring.publishPoll.lossy.batch64", configuration: config) { benchmark in
        let ring = BroadcastRing(capacity: 4096, gapSubject: 0)
        let consumer = ring.addConsumer(name: "c", policy: .lossy, wait: .busySpin)
        var sum: Int64 = 0
        let rounds = benchmark.scaledIterations.count / 64
        benchmark.startMeasurement()
        for r in 0..<rounds {
            ring.publishBatch(count: 64) { b in for k in 0..<64 { b[k] = quote(SubjectID(k), Int64(r)) } }
            _ = consumer.poll(maxBatch: 64, timeoutNanos: 0) { sum &+= $0.a }
        }
        benchmark.stopMeasurement()
        blackHole(sum)
    }

    Benchmark("Baseline.lockedDeque.pushPop.batch64", configuration: config) { benchmark in
        let q = LockedDeque()
        var sum: Int64 = 0
        let rounds = benchmark.scaledIterations.count / 64
        benchmark.startMeasurement()
        for r in 0..<rounds {
            q.lock.lock()
            for k in 0..<64 { q.queue.append(quote(SubjectID(k), Int64(r))) }
            q.lock.unlock()
            q.lock.lock()
            while let e = q.queue.popFirst() { sum &+= e.a }
            q.lock.unlock()
        }
        benchmark.stopMeasurement()
        blackHole(sum)
    }

    Benchmark("Ring.lvc.update", configuration: config) { benchmark in
        let lvc = LastValueCache(maxSubjects: 4096)
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            var e = quote(SubjectID(i & 4095), Int64(i)); e.seq = UInt64(i)
            lvc.update(e)
        }
        benchmark.stopMeasurement()
    }

    let table = SubjectTable()
    var ids: [SubjectID] = []
    for v in ["XNAS", "XNYS"] { for s in 0..<500 { for k in ["TRADE", "QUOTE"] { ids.append(table.intern(text: "MD.\(v).S\(s).\(k)")) } } }
    var patterns: [(Int, [SubjectPattern])] = []
    for id in 0..<2000 {
        let s = id % 500
        patterns.append((id, [try! SubjectPattern("MD.XNAS.S\(s).TRADE"), try! SubjectPattern("MD.*.S\((s * 7) % 500).QUOTE"),
                              try! SubjectPattern(id % 100 == 0 ? "MD.XNYS.>" : "MD.XNYS.S\((s * 3) % 500).>")]))
    }
    let routerConfig = Benchmark.Configuration(metrics: [.throughput, .wallClock, .mallocCountTotal], scalingFactor: .kilo,
                                               maxDuration: .seconds(3))

    Benchmark("Router.match.cached", configuration: routerConfig) { benchmark in
        let router = SubjectRouter<Int>(cacheCapacity: 4096)
        router.add(patterns)
        for id in ids { _ = router.withMatches(subjectID: id, text: table.entry(id)) { $0.count } }
        var total = 0
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            let id = ids[i % ids.count]
            total &+= router.withMatches(subjectID: id, text: table.entry(id)) { $0.count }
        }
        benchmark.stopMeasurement()
        blackHole(total)
    }

    Benchmark("Router.match.uncached", configuration: routerConfig) { benchmark in
        let router = SubjectRouter<Int>(cacheCapacity: 1)
        router.add(patterns)
        var total = 0
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            let id = ids[i % ids.count]
            total &+= router.withMatches(subjectID: id, text: table.entry(id)) { $0.count }
        }
        benchmark.stopMeasurement()
        blackHole(total)
    }

    Benchmark("Baseline.bruteForce.match", configuration: Benchmark.Configuration(
        metrics: [.throughput, .wallClock], scalingFactor: .one, maxDuration: .seconds(3))) { benchmark in
        var total = 0
        for i in benchmark.scaledIterations {
            let text = table.text(ids[i % ids.count])
            for (_, ps) in patterns where ps.contains(where: { $0.matches(subjectText: text) }) { total += 1 }
        }
        blackHole(total)
    }
}
