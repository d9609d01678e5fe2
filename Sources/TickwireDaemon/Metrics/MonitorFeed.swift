import Foundation
import TickwireAlerts
import TickwireCore
import TickwireRing

/// The alerts the daemon raised most recently, for the monitor page: the analytics thread records each as it
/// publishes it, the monitor reads the newest at each snapshot.
///
/// A mutex, not a lock-free ring: alerts are rare (each rule fires at most once per subject per cooldown), and
/// the analytics thread is a lossy consumer the feed never waits for.
public final class RecentAlerts: Sendable {
    static let capacity = 50
    private struct State {
        var alerts: [MonitorSnapshot.Alert] = []
        var seq: UInt64 = 0
    }
    private let state = Locked(State())

    public init() {}

    /// Keeps `event` (an ALERT event) under `subject`, its subject's text.
    public func record(_ event: Event, subject: String) {
        let body = event.alertBody
        let tokens = subject.split(separator: ".")
        let rule = AlertCode(rawValue: body.rule)?.name ?? (tokens.count > 1 ? String(tokens[1]) : "\(body.rule)")
        let symbol = tokens.count > 2 ? tokens[2...].joined(separator: ".") : ""
        // As `tickwire tail` prints them (EventText): e8 decimals, except STALE_QUOTE's reference, a time in ns.
        let reference = AlertCode(rawValue: body.rule) == .staleQuote ? String(body.reference) : FixedPoint.format(e8: body.reference)
        state.withLock { s in
            s.seq += 1
            s.alerts.append(MonitorSnapshot.Alert(
                seq: s.seq, subject: subject, rule: rule, symbol: symbol,
                eventTimeNanos: event.eventTime.rawValue, knownTimeNanos: event.knownTime.rawValue,
                value: FixedPoint.format(e8: body.value), threshold: FixedPoint.format(e8: body.threshold), reference: reference))
            if s.alerts.count > Self.capacity { s.alerts.removeFirst(s.alerts.count - Self.capacity) }
        }
    }

    /// Newest first.
    var latest: [MonitorSnapshot.Alert] { state.withLock { $0.alerts.reversed() } }
}

/// Builds the monitor's snapshots from the daemon's statistics: the same `DaemonStatistics` `/metrics` renders,
/// plus rates and interval percentiles computed against the previous snapshot, a short history for the charts,
/// each desk's limit use and the latest alerts.
///
/// Used by one thread at a time (the monitor's pusher); not thread-safe by itself.
final class MonitorFeed: @unchecked Sendable {
    static let historyLength = 120
    static let maxSubscriptionsShown = 100
    static let publishLatencyName = "tickwire_publish_latency_seconds"
    static let journalFsyncName = "tickwire_journal_fsync_seconds"

    struct Inputs: Sendable {
        var statistics: @Sendable () -> DaemonStatistics
        /// Each desk with positions and its limit use, sorted by desk.
        var riskUse: @Sendable () -> [(desk: String, use: RiskUse)] = { [] }
        var alerts: RecentAlerts = RecentAlerts()
        var peers: @Sendable () -> [MonitorPeer] = { [] }
    }

    private let inputs: Inputs
    private struct Previous {
        var uptime: Double
        var published: UInt64
        var sourceEvents: [String: UInt64]
        var accepted: UInt64
        var histograms: [String: [UInt64]]
    }
    private var previous: Previous?
    private var history = MonitorSnapshot.History()

    init(_ inputs: Inputs) { self.inputs = inputs }

    /// The next snapshot; rates are over the time since the previous call.
    /// - Parameter monitor: the monitor's own counters (pages open, refused, …), by name.
    func next(monitor: [String: UInt64] = [:]) -> MonitorSnapshot {
        let s = inputs.statistics()
        var m = MonitorSnapshot()
        m.timeNanos = Nanos.now().rawValue
        m.uptimeSeconds = s.uptimeSeconds
        let interval = previous.map { s.uptimeSeconds - $0.uptime } ?? 0
        m.intervalSeconds = interval
        func rate(_ now: UInt64, _ before: UInt64?) -> Double {
            guard let before, interval > 0, now >= before else { return 0 }
            return Double(now - before) / interval
        }

        m.ring = .init(capacity: s.ringCapacity, published: s.published, publishedPerSecond: rate(s.published, previous?.published),
                       occupancy: s.ringOccupancy.isFinite ? s.ringOccupancy : 0, subjects: s.subjects)

        var sourceEvents: [String: UInt64] = [:]
        for (name, counters) in s.sources {
            var values: [String: UInt64] = [:]
            for c in counters { values[c.name] = c.value }
            let events = values["events"] ?? 0
            sourceEvents[name] = events
            m.sources.append(.init(name: name, eventsPerSecond: rate(events, previous?.sourceEvents[name]), counters: values))
        }

        let subscriptions = s.consumers.map { c in
            MonitorSnapshot.Subscription(name: c.name, delivered: c.counters.delivered, dropped: c.counters.dropped,
                                         lag: c.counters.lag, resyncs: c.counters.resyncs, stalls: c.counters.stalls)
        }
        m.subscriptions.total = subscriptions.count
        // The daemon's own consumers come first in `consumers`; past the cap, the subscriptions losing most are shown.
        m.subscriptions.shown = subscriptions.count <= Self.maxSubscriptionsShown ? subscriptions
            : Array(subscriptions.enumerated().sorted { ($0.element.dropped, $0.element.lag, -$0.offset) > ($1.element.dropped, $1.element.lag, -$1.offset) }
                .prefix(Self.maxSubscriptionsShown).map(\.element))

        var labelled: [String: [String: UInt64]] = [:]
        var plain: [String: UInt64] = [:]
        for c in s.counters {
            if c.labels.0.isEmpty { plain[c.name] = c.value } else { labelled[c.name, default: [:]][c.labels.1] = c.value }
        }
        let gauges = Dictionary(s.gauges.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })

        var histogramCounts: [String: [UInt64]] = [:]
        func latency(_ name: String) -> MonitorSnapshot.Latency {
            guard let h = s.histograms.first(where: { $0.name == name })?.histogram else { return .init() }
            let snap = h.snapshot()
            let cumulative = snap.bounds.map(\.count)
            histogramCounts[name] = cumulative
            return Self.intervalLatency(bounds: snap.bounds.map(\.le), cumulative: cumulative, before: previous?.histograms[name],
                                        sumSeconds: snap.sumSeconds, count: snap.count)
        }

        m.publish.latency = latency(Self.publishLatencyName)
        m.publish.failures = plain["tickwire_publish_failures_total"] ?? 0
        m.publish.remoteSubscribers = gauges["tickwire_publish_subscribers"]
        m.publish.stalledRemoteSubscribers = gauges["tickwire_publish_stalled_subscribers"]
        m.publish.remoteSubscribersCut = plain["tickwire_publish_subscribers_cut_total"]

        let outcomes = labelled["tickwire_trades_total"] ?? [:]
        m.trades.outcomes = outcomes
        m.trades.acceptedPerSecond = rate(outcomes["accepted"] ?? 0, previous?.accepted)
        m.trades.rejectedByReason = labelled["tickwire_trades_rejected_total"] ?? [:]
        m.trades.journalFsync = latency(Self.journalFsyncName)

        m.risk = inputs.riskUse().map { d in
            .init(desk: d.desk, position: FixedPoint.format(e8: d.use.position), notional: FixedPoint.format(e8: d.use.notional),
                  pnl: FixedPoint.format(e8: d.use.pnl), usedBasisPoints: d.use.usedBasisPoints)
        }

        m.alerts.firedByRule = labelled["tickwire_alerts_total"] ?? [:]
        m.alerts.suppressedByRule = labelled["tickwire_alerts_suppressed_total"] ?? [:]
        m.alerts.latest = inputs.alerts.latest

        for (name, value) in plain where name.hasPrefix("tickwire_store_") {
            m.store[String(name.dropFirst("tickwire_store_".count).dropLast("_total".count))] = value
        }
        m.monitor = monitor
        m.peers = inputs.peers().map { .init(name: $0.name, role: $0.role, health: $0.health, detail: $0.detail) }

        // The charts: one point per snapshot after the first (the first has no interval to measure).
        if previous != nil {
            history.uptimeSeconds.append(m.uptimeSeconds)
            history.publishP50Seconds.append(m.publish.latency.p50Seconds)
            history.publishP99Seconds.append(m.publish.latency.p99Seconds)
            history.publishedPerSecond.append(m.ring.publishedPerSecond)
            if history.uptimeSeconds.count > Self.historyLength {
                history.uptimeSeconds.removeFirst()
                history.publishP50Seconds.removeFirst()
                history.publishP99Seconds.removeFirst()
                history.publishedPerSecond.removeFirst()
            }
        }
        m.history = history

        previous = Previous(uptime: s.uptimeSeconds, published: s.published, sourceEvents: sourceEvents,
                            accepted: outcomes["accepted"] ?? 0, histograms: histogramCounts)
        return m
    }

    /// The interval's p50 and p99 from two cumulative bucket counts of a `LatencyHistogram` (upper bounds in
    /// seconds), interpolated linearly within the bucket that holds the rank; nil without samples.
    static func intervalLatency(bounds: [Double], cumulative: [UInt64], before: [UInt64]?, sumSeconds: Double, count: UInt64) -> MonitorSnapshot.Latency {
        var out = MonitorSnapshot.Latency()
        out.meanSeconds = count > 0 ? sumSeconds / Double(count) : nil
        func buckets(_ c: [UInt64]) -> [UInt64] { c.indices.map { i in i == 0 ? c[0] : c[i] &- c[i - 1] } }
        let now = buckets(cumulative), then = before.map(buckets) ?? []
        // A bucket can only grow; a smaller count (never expected) is taken as no samples rather than wrapping.
        let perBucket = now.indices.map { i in now[i] >= (i < then.count ? then[i] : 0) ? now[i] - (i < then.count ? then[i] : 0) : 0 }
        let total = perBucket.reduce(0, +)
        out.samples = total
        guard total > 0 else { return out }
        func quantile(_ q: Double) -> Double {
            let rank = q * Double(total)
            var seen: UInt64 = 0
            for i in perBucket.indices where perBucket[i] > 0 {
                if Double(seen + perBucket[i]) >= rank {
                    let lower = i == 0 ? 0 : bounds[i - 1]
                    let fraction = (rank - Double(seen)) / Double(perBucket[i])
                    return lower + (bounds[i] - lower) * min(1, max(0, fraction))
                }
                seen += perBucket[i]
            }
            return bounds[perBucket.lastIndex { $0 > 0 } ?? 0]
        }
        out.p50Seconds = quantile(0.50)
        out.p99Seconds = quantile(0.99)
        return out
    }
}
