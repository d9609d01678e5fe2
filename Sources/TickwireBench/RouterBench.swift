import Foundation
import TickwireCore
import TickwireRing

/// `tickwire-bench router`: subject routing for 2,000 trader subscriptions, each a mix of literal and wildcard
/// patterns, over a universe of 4 venues × 500 symbols × 4 kinds (8,000 subjects).
///
/// Measures matches per second on cache hits, the cost of a miss (every match walks the trie), both beside a
/// brute-force matcher (every pattern of every subscription checked with `SubjectPattern.matches`) in the same
/// run, and one producer publishing through the ring to a routing consumer that delivers to the 2,000
/// subscriptions (throughput and publish-to-routed latency).
///
/// Parameters: `events`, `runs`; `subscriptions` (default 2000), `hot_subjects` (default 1000).
enum RouterBench {
    static let venues = ["XNAS", "XNYS", "ARCA", "BATS"]
    static let kinds = ["TRADE", "QUOTE", "STATUS", "BOOK"]
    static let symbolCount = 500

    struct Universe {
        let table = SubjectTable()
        var ids: [SubjectID] = []
        var texts: [String] = []
    }

    static func universe() -> Universe {
        var u = Universe()
        for v in venues { for s in 0..<symbolCount { for k in kinds {
            let text = "MD.\(v).S\(s).\(k)"
            u.ids.append(u.table.intern(text: text)); u.texts.append(text)
        } } }
        return u
    }

    /// Trader subscriptions: mostly literal subjects and per-symbol wildcards, some venue-wide kinds, a few
    /// firehoses; 1 to 6 patterns each. Seeded, so every run routes the same way.
    static func subscriptions(count: Int) -> [(Int, [SubjectPattern])] {
        var rng = SplitMix64(seed: 42)
        func pick<T>(_ xs: [T]) -> T { xs[Int(rng.next() % UInt64(xs.count))] }
        func symbol() -> String { "S\(Int(rng.next() % UInt64(symbolCount)))" }
        return (0..<count).map { id in
            let n = 1 + Int(rng.next() % 6)
            let patterns = (0..<n).map { _ -> SubjectPattern in
                let text: String
                switch rng.next() % 100 {
                case 0..<45: text = "MD.\(pick(venues)).\(symbol()).\(pick(kinds))"
                case 45..<70: text = "MD.*.\(symbol()).\(pick(kinds))"
                case 70..<88: text = "MD.\(pick(venues)).\(symbol()).>"
                case 88..<97: text = "MD.\(pick(venues)).*.\(pick(["TRADE", "STATUS"]))"
                case 97..<99: text = "MD.*.*.STATUS"
                default: text = "MD.\(pick(venues)).>"
                }
                return try! SubjectPattern(text)
            }
            return (id, patterns)
        }
    }

    static func run(_ options: BenchOptions) throws -> Result {
        let subscriptionCount = Int(options.parameters["subscriptions"] ?? "") ?? 2_000
        let hot = Int(options.parameters["hot_subjects"] ?? "") ?? 1_000
        let u = universe()
        let subs = subscriptions(count: subscriptionCount)
        let patternCount = subs.reduce(0) { $0 + $1.1.count }
        let buildStart = benchNow()
        let router = SubjectRouter<Int>(cacheCapacity: 8192)
        router.add(subs)
        let buildNanos = benchNow() - buildStart

        // Matches per second on cache hits: the `hot` busiest subjects, round-robin.
        let hotIDs = Array(u.ids.prefix(hot))
        let hotTexts = Array(u.texts.prefix(hot))
        var fanout = 0
        for (i, id) in hotIDs.enumerated() { fanout += router.match(subjectID: id, text: hotTexts[i]).count }
        let cachedRounds = max(1, options.events / hot)
        let cached = bestAndMedian(options.runs) {
            var total = 0
            let t0 = benchNow()
            for _ in 0..<cachedRounds {
                for i in 0..<hotIDs.count {
                    total &+= router.withMatches(subjectID: hotIDs[i], subjects: u.table) { $0.count }
                }
            }
            let t1 = benchNow()
            precondition(total > 0)
            return Double(cachedRounds * hotIDs.count) / Double(t1 - t0) * 1e9
        }

        // Misses: a one-slot cache and alternating subjects, so every match walks the trie and stores its answer.
        let missRouter = SubjectRouter<Int>(cacheCapacity: 1)
        missRouter.add(subs)
        let missCount = min(options.events, 2_000_000)
        let uncached = bestAndMedian(options.runs) {
            var total = 0
            let t0 = benchNow()
            for i in 0..<missCount {
                let k = i % u.ids.count
                total &+= missRouter.withMatches(subjectID: u.ids[k], text: u.table.entry(u.ids[k])) { $0.count }
            }
            let t1 = benchNow()
            precondition(total > 0 && missRouter.cacheStats.hits == 0)
            return Double(missCount) / Double(t1 - t0) * 1e9
        }

        // Brute force: every pattern of every subscription.
        let bruteCount = 2_000
        let brute = bestAndMedian(options.runs) {
            var total = 0
            let t0 = benchNow()
            for i in 0..<bruteCount {
                let text = u.texts[(i * 7) % u.texts.count]
                for (_, patterns) in subs where patterns.contains(where: { $0.matches(subjectText: text) }) { total += 1 }
            }
            let t1 = benchNow()
            precondition(total > 0)
            return Double(bruteCount) / Double(t1 - t0) * 1e9
        }

        let routed = routeThroughRing(universe: u, router: router, events: options.events, runs: options.runs)
        let paced = routedLatency(universe: u, router: router, samples: 20_000, gapNanos: 50_000)

        func matches(_ r: (best: Double, median: Double), digits: Double = 10) -> Result.Matches {
            Result.Matches(bestPerS: r.best.rounded(), medianPerS: r.median.rounded(), nsPerMatch: (1e9 / r.median * digits).rounded() / digits)
        }
        return Result(
            subscriptions: subscriptionCount, patterns: patternCount, subjects: u.ids.count,
            hotSubjects: hot, meanFanoutHot: Double(fanout) / Double(hot), trieBuildMs: Double(buildNanos) / 1e6,
            cachedMatch: matches(cached), uncachedMatch: matches(uncached), bruteForceMatch: matches(brute, digits: 1),
            ratioCachedVsBruteForce: ratio(cached.median, brute.median),
            ratioUncachedVsBruteForce: ratio(uncached.median, brute.median),
            ratioCachedVsUncached: ratio(cached.median, uncached.median),
            ringTo_2000Subscriptions: routed,
            ringTo_2000SubscriptionsPacedLatency: .init(
                note: "one event every 50 us, parked consumer, publish to the end of its routing (hop + match + deliveries)",
                latency: paced.report))
    }

    struct Result: BenchReport {
        var suite = "router"
        var subscriptions: Int, patterns: Int, subjects: Int, hotSubjects: Int
        var meanFanoutHot: Double, trieBuildMs: Double
        struct Matches: Codable, Sendable { var bestPerS: Double, medianPerS: Double, nsPerMatch: Double }
        var cachedMatch: Matches, uncachedMatch: Matches, bruteForceMatch: Matches
        var ratioCachedVsBruteForce: Double, ratioUncachedVsBruteForce: Double, ratioCachedVsUncached: Double
        struct Routed: Codable, Sendable {
            var eventsPerS: Double, deliveriesPerS: Double, meanFanout: Double
            var publishToRoutedLatencyUnderLoad: Latency
            struct Cache: Codable, Sendable { var hits: Int, misses: Int }
            var cache: Cache
        }
        var ringTo_2000Subscriptions: Routed?
        struct Paced: Codable, Sendable { var note: String, latency: Latency }
        var ringTo_2000SubscriptionsPacedLatency: Paced
    }

    /// One producer publishes market data over all 8,000 subjects into the ring; one busy-spinning consumer
    /// routes each event and counts a delivery per matching subscription. Every 1,024th event is stamped to
    /// measure publish-to-routed latency under load.
    static func routeThroughRing(universe u: Universe, router: SubjectRouter<Int>, events: Int, runs: Int) -> Result.Routed? {
        var best: Result.Routed?
        var bestRate = 0.0
        for _ in 0..<max(1, runs) {
            let ring = BroadcastRing(capacity: 16_384, gapSubject: 0, producerWait: .yield)
            let consumer = ring.addConsumer(name: "router", policy: .blocking, wait: .busySpin)
            let result = BenchBox((deliveries: 0, latency: LatencyRecorder()))
            let ids = u.ids
            let reader = BenchThread {
                var deliveries = [Int](repeating: 0, count: 2_000)
                var rec = LatencyRecorder()
                var total = 0
                deliveries.withUnsafeMutableBufferPointer { perSubscription in
                    while consumer.poll(maxBatch: 1024, timeoutNanos: nil, { e in
                        router.withMatches(subjectID: e.subjectID, subjects: u.table) { matches in
                            for s in matches where s < perSubscription.count { perSubscription[s] &+= 1 }
                            total &+= matches.count
                        }
                        if e.seq & 1023 == 0 { rec.record(benchNow() - e.b) }
                    }) >= 0 {}
                }
                result.set((total, rec))
            }
            let t0 = benchNow()
            var i = 0
            while i < events {
                let base = i
                i += ring.publishBatch(count: min(64, events - i)) { b in
                    let now = benchNow()
                    for k in 0..<b.count {
                        // Skewed toward the first 1,000 subjects, as real flow is toward liquid names.
                        let n = base + k
                        let id = ids[n % 4 == 0 ? n % ids.count : n % 1_000]
                        b[k] = Event(subjectID: id, kind: .quote, eventTime: Nanos(now), knownTime: Nanos(now), a: Int64(n), b: now)
                    }
                }
            }
            ring.close()
            reader.join()
            let t1 = benchNow()
            let rate = Double(events) / Double(t1 - t0) * 1e9
            if rate > bestRate {
                bestRate = rate
                let r = result.get
                best = Result.Routed(
                    eventsPerS: rate.rounded(), deliveriesPerS: (Double(r.deliveries) / Double(t1 - t0) * 1e9).rounded(),
                    meanFanout: Double(r.deliveries) / Double(events), publishToRoutedLatencyUnderLoad: r.latency.report,
                    cache: .init(hits: Int(router.cacheStats.hits), misses: Int(router.cacheStats.misses)))
            }
        }
        return best
    }
}

extension RouterBench {
    /// Publish-to-routed latency with the ring not saturated: the hop plus the match and the deliveries.
    static func routedLatency(universe u: Universe, router: SubjectRouter<Int>, samples: Int, gapNanos: Int64) -> LatencyRecorder {
        let ring = BroadcastRing(capacity: 16_384, gapSubject: 0)
        let consumer = ring.addConsumer(name: "router", policy: .blocking, wait: .park)
        let out = BenchBox(LatencyRecorder())
        let reader = BenchThread {
            var rec = LatencyRecorder()
            var deliveries = [Int](repeating: 0, count: 2_000)
            deliveries.withUnsafeMutableBufferPointer { perSubscription in
                while consumer.poll(maxBatch: 64, timeoutNanos: nil, { e in
                    router.withMatches(subjectID: e.subjectID, subjects: u.table) { matches in
                        for s in matches where s < perSubscription.count { perSubscription[s] &+= 1 }
                    }
                    rec.record(benchNow() - e.b)
                }) >= 0 {}
            }
            out.set(rec)
        }
        var next = benchNow() + 1_000_000
        for n in 0..<samples {
            spinUntil(next)
            let now = benchNow()
            ring.publish(Event(subjectID: u.ids[n % 1_000], kind: .quote, eventTime: Nanos(now), knownTime: Nanos(now), a: Int64(n), b: now))
            next += gapNanos
        }
        ring.close()
        reader.join()
        return out.get
    }
}

/// A seeded generator so the subscription mix repeats run to run.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
