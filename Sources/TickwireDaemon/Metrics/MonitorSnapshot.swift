import Foundation
import TickwireCore

/// What the monitor page receives over its WebSocket, about once a second: one JSON text frame per snapshot.
/// docs/MONITOR.md documents every field; `version` changes when a field changes meaning or goes away.
///
/// Every number comes from `Daemon.statistics()`, the snapshot `/metrics` and `tickwire stats` are rendered from,
/// so the page and `tickwire stats` agree up to the moment each was taken. Rates and percentiles are computed
/// here, over the interval since the previous snapshot.
struct MonitorSnapshot: Codable, Sendable, Equatable {
    static let currentVersion = 1

    var type = "snapshot"
    var version = MonitorSnapshot.currentVersion
    /// Wall-clock time the snapshot was taken, nanoseconds since the Unix epoch, UTC.
    var timeNanos: Int64 = 0
    var uptimeSeconds = 0.0
    /// Seconds since the previous snapshot (what the rates are over); 0 in the first.
    var intervalSeconds = 0.0
    var ring = Ring()
    var sources: [Source] = []
    var subscriptions = Subscriptions()
    var publish = Publish()
    var trades = Trades()
    var risk: [Desk] = []
    var alerts = Alerts()
    var store: [String: UInt64] = [:]
    /// The last `MonitorFeed.historyLength` snapshots' publish latency and throughput, oldest first, for the charts.
    var history = History()
    /// The monitor's own counters: pages open, refused, snapshots dropped for slow pages, pages closed.
    var monitor: [String: UInt64] = [:]
    /// Other daemons this one works with (an active/active pair, a NATS bus): empty when there are none.
    var peers: [Peer] = []

    struct Ring: Codable, Sendable, Equatable {
        var capacity = 0
        var published: UInt64 = 0
        var publishedPerSecond = 0.0
        /// Fraction of the ring the slowest blocking consumer has yet to read (0...1).
        var occupancy = 0.0
        var subjects = 0
    }

    struct Source: Codable, Sendable, Equatable {
        var name: String
        var eventsPerSecond: Double
        /// The source's own counters, as `tickwire stats` lists them (events, gaps, rerequests, malformed…).
        var counters: [String: UInt64]
    }

    struct Subscription: Codable, Sendable, Equatable {
        var name: String
        var delivered: UInt64
        var dropped: UInt64
        var lag: UInt64
        var resyncs: UInt64
        var stalls: UInt64
    }

    struct Subscriptions: Codable, Sendable, Equatable {
        /// How many there are; `shown` holds at most `MonitorFeed.maxSubscriptionsShown`, most dropped first.
        var total = 0
        var shown: [Subscription] = []
    }

    /// Percentiles of one interval's samples from a power-of-two histogram, interpolated within the bucket
    /// (as Prometheus' histogram_quantile does): good to a factor of two, which is the histogram's resolution.
    struct Latency: Codable, Sendable, Equatable {
        var samples: UInt64 = 0
        var p50Seconds: Double? = nil
        var p99Seconds: Double? = nil
        /// Since the daemon started.
        var meanSeconds: Double? = nil
    }

    struct Publish: Codable, Sendable, Equatable {
        var latency = Latency()
        var failures: UInt64 = 0
        var remoteSubscribers: Double? = nil
        var stalledRemoteSubscribers: Double? = nil
        var remoteSubscribersCut: UInt64? = nil
    }

    struct Trades: Codable, Sendable, Equatable {
        var acceptedPerSecond = 0.0
        /// Submissions by outcome: accepted, duplicate, rejected, malformed.
        var outcomes: [String: UInt64] = [:]
        /// Refused by the pre-trade risk check, per limit.
        var rejectedByReason: [String: UInt64] = [:]
        var journalFsync = Latency()
    }

    struct Desk: Codable, Sendable, Equatable {
        var desk: String
        /// e8 fixed-point values as decimal text (never binary floating point), as `tickwire tail` prints them.
        var position: String
        var notional: String
        var pnl: String
        /// The tightest limit's use, in basis points of it (10000 = at the limit).
        var usedBasisPoints: Int64
    }

    struct Alert: Codable, Sendable, Equatable {
        /// Increases by one per alert the daemon raised since it started; the page shows each once.
        var seq: UInt64
        var subject: String
        var rule: String
        var symbol: String
        var eventTimeNanos: Int64
        var knownTimeNanos: Int64
        /// As docs/ALERTS.md: decimal text of e8 values; STALE_QUOTE's reference is nanoseconds.
        var value: String
        var threshold: String
        var reference: String
    }

    struct Alerts: Codable, Sendable, Equatable {
        var firedByRule: [String: UInt64] = [:]
        var suppressedByRule: [String: UInt64] = [:]
        /// The most recent alerts, newest first (at most `RecentAlerts.capacity`).
        var latest: [Alert] = []
    }

    struct History: Codable, Sendable, Equatable {
        var uptimeSeconds: [Double] = []
        var publishP50Seconds: [Double?] = []
        var publishP99Seconds: [Double?] = []
        var publishedPerSecond: [Double] = []
    }

    /// An active/active partner or a NATS bus member. Filled in by the code that knows about peers; the monitor
    /// only shows them.
    struct Peer: Codable, Sendable, Equatable {
        var name: String
        /// Such as "active", "standby", "member".
        var role: String
        /// Such as "ok", "degraded", "down".
        var health: String
        var detail: String
    }
}

/// A peer as other components report it to the monitor (see `MonitorFeed.peers`).
public struct MonitorPeer: Sendable, Equatable {
    public var name: String
    public var role: String
    public var health: String
    public var detail: String
    public init(name: String, role: String, health: String, detail: String = "") {
        self.name = name; self.role = role; self.health = health; self.detail = detail
    }
}
