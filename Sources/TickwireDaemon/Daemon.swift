import CTickwireSys
import Foundation
import Logging
import Synchronization
import TickwireAlerts
import TickwireCore
import TickwireFeeds
import TickwireNATS
import TickwireRisk
import TickwireStore
import TickwireRing
import TickwireZMQ

/// Why the daemon could not start; each says what to do about it.
public enum DaemonError: Error, CustomStringConvertible {
    case endpointBusy(String)
    case transport(String, ZMQError)
    case dataDirectory(String, String)
    case source(String, String)
    case config(ConfigError)
    case nats([String], NATSError)

    public var description: String {
        switch self {
        case .endpointBusy(let e): "\(e) is already in use by another process (is another 'tickwire run' going? stop it or pass another endpoint)"
        case .transport(let what, let e): "\(what): \(e)"
        case .dataDirectory(let dir, let why): "data directory \(dir): \(why)"
        case .source(let spec, let why): "source '\(spec)': \(why)"
        case .config(let e): e.description
        case .nats(let servers, let e): "NATS \(servers.joined(separator: ",")): \(e) (--nats-required; without it the daemon starts and keeps trying)"
        }
    }
}

/// The feed handler: sources normalize into one broadcast ring; consumers fan the ring out to ZeroMQ and to
/// in-process subscribers. One owner per concern; this type only wires them and runs their threads.
///
/// Threads (2 cores): one per source, which also sends to ZeroMQ what it published when no other thread is
/// sending (`PublishStage`: the wire is a blocking ring consumer, but ZeroMQ itself never blocks, it drops per
/// subscriber at the high-water mark, so it slows the feed only when the machine cannot encode and send as fast
/// as the sources produce); one publisher thread that takes over in a flood; the in-process subscription hub
/// (lossy).
public final class Daemon: @unchecked Sendable {
    public let config: DaemonConfig
    public let subjects = SubjectTable()
    public let ring: BroadcastRing
    public let lastValues: LastValueCache
    public let context = ZMQContext()
    let logger: Logger
    let stop = StopSignal()
    private let running = Atomic<Int>(0)
    private var sources: [EventSource] = []
    private var publisher: ZMQPublisher!
    /// Core NATS, when `[publish.nats]` or `--nats` names servers.
    private var natsPublisher: NATSPublisher?
    private var publishLatency = LatencyHistogram()
    /// Sends the ring's events to ZeroMQ and NATS from the thread that holds its turn (see `PublishStage`).
    private var publishStage: PublishStage!
    /// Active/active: the market-data lease (nil: this daemon always publishes). Only its holder's publisher sends.
    private(set) var lease: MarketDataLease?
    private var consumers: [RingConsumer] = []
    /// In-process subscriptions, fanned out through the subject router on their own thread.
    public let hub: SubscriptionHub
    /// The metrics registry `/metrics` serves; `tickwire run` also points swift-metrics at it.
    public let metrics = MetricsExport()
    /// Complex-event rules over the live stream; their alerts go back into the ring as ALERT.<RULE>.<SYMBOL>.
    public let alerts: AlertEngine
    /// Pre-trade limits and positions marked to the live market.
    public let risk: RiskEngine
    /// A rule or limit `init` could not read; `start` throws it.
    private var configError: ConfigError?
    private var metricsServer: MetricsServer?
    /// The monitor page's WebSocket pages (nil with `[metrics] monitor = false`), and the alerts it shows.
    private var monitorPages: MonitorPages?
    public let recentAlerts = RecentAlerts()
    /// Peers (an active/active partner, NATS bus members) for the monitor's `peers` section; none by default.
    /// Set before `start`: the monitor's thread calls it once a second from then on.
    public var monitorPeers: @Sendable () -> [MonitorPeer] = { [] }
    private let storeWrites = LatencyHistogram()
    private let journalSyncs = LatencyHistogram()
    private let storeErrors = Atomic<UInt64>(0)
    private let storeAppended = Atomic<UInt64>(0)
    private let storeLost = Atomic<UInt64>(0)
    private let storeOutOfWindow = Atomic<UInt64>(0)
    private var trades: TradeService?
    /// Accepted trades go to the ring through this, so an acknowledgement never waits for a ring slot.
    private let tradeEvents: TradeEventForwarder
    /// Where the trade service listens (nil until `start`).
    public var tradeServiceEndpoint: String? { trades?.boundEndpoint }
    private var lockFD: Int32 = -1
    public let gapSubject: SubjectID
    public let startedAt = Nanos.now()

    public init(config: DaemonConfig, logger: Logger) {
        self.config = config
        self.logger = logger
        lastValues = LastValueCache(maxSubjects: 1 << 16)
        gapSubject = subjects.intern(text: "SYS.GAP")
        // Symmetric fences: when the publisher parked on the ring each time it caught up with the sources, a
        // membarrier per park cost more than a locked store per publish (5% of the path's CPU per message,
        // BENCH-HISTORY E3). Since it sends in turns (`PublishStage`) only the hub parks here: asymmetric fences
        // may pay again, not measured yet.
        ring = BroadcastRing(capacity: config.ringCapacity, producers: .multi, gapSubject: gapSubject, lastValues: lastValues,
                             asymmetricFences: false)
        hub = SubscriptionHub(ring: ring, subjects: subjects, gapSubject: gapSubject)
        tradeEvents = TradeEventForwarder(subjects: subjects)
        // A parsed config's rules and limits were checked in `DaemonConfig.parse`. One built in code with a bad
        // rule or limit is not run with defaults in their place: `start` refuses it, naming the key.
        var rules: [AlertRule] = [], riskConfig = RiskConfig()
        do {
            rules = try config.alertRules()
            riskConfig = try config.riskConfig()
        } catch {
            configError = error
        }
        alerts = AlertEngine(rules: rules, subjects: subjects)
        risk = RiskEngine(config: riskConfig)
    }

    /// Opens the data directory, binds every endpoint, and starts every thread.
    /// - Throws: `DaemonError` — a busy endpoint, an unusable data directory, a bad source — before any thread runs.
    public func start() throws(DaemonError) {
        if let configError { throw .config(configError) }
        try openDataDirectory()
        sources = try makeSources()
        do {
            publisher = try ZMQPublisher(context: context, endpoint: config.publishEndpoint,
                                         highWaterMark: config.publishHighWaterMark,
                                         budgetBytes: config.publishMemoryBudgetMB << 20, subjects: subjects,
                                         published: { [ring] in ring.publishedSequence },
                                         log: { [logger] in logger.info("\($0)") })
            publishLatency = publisher.latency
        } catch {
            if error.addressInUse { throw .endpointBusy(config.publishEndpoint) }
            throw .transport("publishing on \(config.publishEndpoint)", error)
        }
        if let endpoint = config.snapshotEndpoint {
            do {
                let socket = try context.socket(.rep)
                try socket.setLinger(milliseconds: 0)
                try socket.bind(endpoint)
                publisher.snapshotSocket = socket
                publisher.snapshotValues = PublishedLastValues()
            } catch {
                if error.addressInUse { throw .endpointBusy(endpoint) }
                throw .transport("snapshot requests on \(endpoint)", error)
            }
        }
        if !config.natsServers.isEmpty {
            do {
                let nats = try NATSPublisher(servers: config.natsServers, required: config.natsRequired, subjects: subjects,
                                             sendAsap: config.natsSendAsap,
                                             log: { [logger] in logger.notice("\($0)") })
                publisher.natsHandoff = nats.handoff
                natsPublisher = nats
            } catch {
                throw .nats(config.natsServers, error)
            }
        }
        if let rep = config.tradeReplication {
            var lc = MarketDataLease.Config(servers: rep.servers, node: rep.node)
            lc.replicas = rep.replicas
            lc.termMs = Int64(config.marketDataLeaseMs)
            let lease = MarketDataLease(lc, log: { [logger] in logger.notice("\($0)") })
            lease.start()
            self.lease = lease
            natsPublisher?.holdsLease = { lease.isActive() }
        }
        // Before any producer: the trade-event forwarder, alerts and the sources send through it (`kick`).
        publishStage = PublishStage(publisher: publisher, ring: ring, lease: lease, takeover: subjects.intern(text: "SYS.TAKEOVER"))
        consumers.append(publishStage.consumer)
        // The trade service starts here. Risk checks each trade before it is journaled, and
        // rebuilds positions from the journal's replay at start.
        var tradeConfig = TradeServiceConfig(endpoint: config.tradeEndpoint)
        tradeConfig.journal.segmentBytes = Int64(config.journalSegmentBytes)
        tradeConfig.cpus = config.tradeCPUs
        tradeConfig.journal.onSync = { [journalSyncs] nanos in journalSyncs.record(nanos: nanos) }
        tradeConfig.preTradeCheck = { [risk] r in
            risk.submit(RiskTrade(desk: r.desk, symbol: r.symbol, side: r.side, quantity: r.quantity, price: r.price))
                .map { RejectReason(.preTradeCheck, $0.description) }
        }
        // Replicated: the taking daemon checks against its live market; every daemon checks positions in log order.
        tradeConfig.replication = config.tradeReplication
        tradeConfig.marketCheck = { [risk] r in
            let (why, mark) = risk.checkMarket(RiskTrade(desk: r.desk, symbol: r.symbol, side: r.side, quantity: r.quantity, price: r.price))
            return (why.map { RejectReason(.preTradeCheck, $0.description) }, mark)
        }
        tradeConfig.sequencedCheck = { [risk] r, mark, reinstated in
            let trade = RiskTrade(desk: r.desk, symbol: r.symbol, side: r.side, quantity: r.quantity, price: r.price)
            // An accepted (perhaps acknowledged) trade the log lost and took back: its decision stands.
            if reinstated { risk.apply(trade); return nil }
            return risk.submitSequenced(trade, markE8: mark).map { RejectReason(.preTradeCheck, $0.description) }
        }
        // Risk positions are built from the journal: checkpointed with it, rebuilt from the last checkpoint and the
        // trades after it at start (and after a journal failure, which may have refused trades risk had counted).
        tradeConfig.state = JournalState(name: "risk", take: { [risk] in risk.snapshot().bytes }, rebuild: { [risk, logger] snapshot, trades in
            let restored = snapshot.flatMap(RiskEngine.Snapshot.init(bytes:))
            if snapshot != nil && restored == nil { logger.warning("risk checkpoint unreadable; positions from the journal's trades only") }
            risk.rebuild(snapshot: restored, then: trades.map {
                RiskTrade(desk: $0.desk, symbol: $0.symbol, side: $0.side, quantity: $0.quantity, price: $0.price)
            })
        })
        let trades = TradeService(
            config: tradeConfig, dataDirectory: config.dataDirectory, context: context,
            log: { [logger] in logger.notice("\($0)") },
            publish: { [forwarder = tradeEvents] in forwarder.push($0) })
        do { try trades.start() } catch {
            if case .bind(_, let e)? = error as? TradeServiceError, e.addressInUse { throw .endpointBusy(config.tradeEndpoint) }
            throw .dataDirectory(config.dataDirectory, "trades: \(error)")
        }
        self.trades = trades
        spawn("trade-events") { [ring, tradeEvents, publishStage] in tradeEvents.run(ring) { publishStage!.kick() } }
        if config.tradeReplication != nil || natsPublisher != nil {
            let given = monitorPeers
            monitorPeers = { [unowned self] in given() + replicationPeers() + natsPeers() }
        }

        if config.metricsMonitor {
            monitorPages = MonitorPages(inputs: .init(
                statistics: { [unowned self] in statistics() },
                riskUse: { [risk] in risk.desks.map { ($0, risk.usage(desk: $0)) } },
                alerts: recentAlerts,
                peers: { [unowned self] in monitorPeers() }), logger: logger)
        }
        do {
            metricsServer = try MetricsServer(endpoint: config.metricsEndpoint, monitor: monitorPages) { [unowned self] path in
                path == "/metrics" ? self.metrics.render(self.statistics()) : nil
            }
        } catch {
            throw .endpointBusy("metrics \(config.metricsEndpoint) (\(error))")
        }

        spawn("publisher") { [publishStage] in publishStage!.run() }
        if let nats = natsPublisher { spawn("nats") { nats.run() } }
        if let budget = publisher.budget { spawn("pub-budget") { budget.run() } }
        spawn("hub") { [self] in hub.run() }
        // Every event is kept while the disk takes writes: the store writer is a blocking consumer, so it can only
        // hold the feed back by back-pressure (counted as stalls). When a write fails (a full disk) it never holds
        // the feed back: it counts what it cannot keep (tickwire_store_lost_events_total) and retries by itself.
        // Logs roll every `storeChunkEvents` events and a sealer thread turns each closed log into a sealed chunk
        // (and a finished date into one segment), so a read of today maps sealed columns plus a small tail.
        let writer: StoreWriter
        let sealer = StoreSealer(directory: config.dataDirectory + "/store",
                                 report: { [logger] in logger.warning("\($0)") },
                                 fail: { [logger] key, error in logger.error("store: sealing \(key) failed: \(error)") })
        do {
            writer = try StoreWriter(directory: config.dataDirectory + "/store", subjects: subjects,
                                     chunkEvents: Self.storeChunkEvents, sealer: sealer,
                                     report: { [logger] in logger.warning("\($0)") })
            sealer.start()
        } catch {
            throw .dataDirectory(config.dataDirectory, "store: \(error)")
        }
        let storeConsumer = ring.addConsumer(name: "store-writer", policy: .blocking, wait: Self.backgroundWait)
        consumers.append(storeConsumer)
        let ownedWriter = Unchecked(writer)
        let windowed = sources.map { $0 is ZMQRelaySource || $0 is NATSRelaySource }
        spawn("store-writer") { [self] in runStoreWriter(ownedWriter.value, storeConsumer, windowed: windowed) }
        let analyticsConsumer = ring.addConsumer(name: "alerts-risk", policy: .lossy, wait: Self.backgroundWait)
        consumers.append(analyticsConsumer)
        spawn("alerts-risk") { [self] in runAnalytics(analyticsConsumer) }
        for (index, source) in sources.enumerated() {
            // The source and its sink are used by this thread alone from here on. A source that flushes before it
            // waits gets a collecting sink: its events reach the ring in batches, one claim each (the ring has
            // several producers: the sources, trade events, alerts and risk).
            let sink = RingSink(ring: ring, subjects: subjects, source: UInt16(index), collects: source.flushesSink,
                                afterPublish: { [publishStage] full in publishStage!.kick(flooding: full) })
            let owned = Unchecked((source, sink))
            spawn("source-\(source.name)") { [self] in
                let (source, sink) = owned.value
                do {
                    try source.run(into: sink, stop: stop)
                    sink.flush()
                    logger.info("source finished", metadata: ["source": "\(source.name)"])
                    if let skipped = (source as? SkipReporting)?.skipSummary { logger.warning("\(skipped)") }
                } catch {
                    sink.flush()
                    logger.error("source stopped: \(error)", metadata: ["source": "\(source.name)"])
                }
            }
        }
        // Snapshots read `statistics()`, complete only now that every consumer and source is in place.
        monitorPages?.start()
        logger.info("tickwire running", metadata: [
            "publish": "\(config.publishEndpoint)", "data": "\(config.dataDirectory)",
            "sources": "\(sources.map(\.name).joined(separator: ","))", "ring": "\(config.ringCapacity)",
        ])
    }

    /// Stops the sources, lets consumers drain what was published, and joins every thread.
    public func shutdown() {
        monitorPages?.stop()
        trades?.stop()
        tradeEvents.close()
        lease?.stop()
        stop.raise()
        ring.close()
        publishStage?.wakeThread()
        hub.wake()
        while running.load(ordering: .acquiring) > 0 { usleep(1_000) }
        publisher = nil
        natsPublisher = nil
        metricsServer?.stop()
        metricsServer = nil
        if lockFD >= 0 { close(lockFD); lockFD = -1 }
        logger.info("tickwire stopped")
    }

    /// Blocks the calling thread until SIGINT or SIGTERM, then shuts down cleanly.
    /// Call `Daemon.blockTerminationSignals()` before `start()` so no other thread takes them.
    public func runUntilSignalled() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        var signal: Int32 = 0
        sigwait(&set, &signal)
        logger.info("signal \(signal == SIGINT ? "SIGINT" : "SIGTERM") received; shutting down")
        shutdown()
    }

    /// Blocks SIGINT and SIGTERM in this thread and every thread it later creates, so `runUntilSignalled`
    /// receives them with sigwait.
    public static func blockTerminationSignals() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// A snapshot of every counter, for `tickwire stats` and metrics.
    public func statistics() -> DaemonStatistics {
        var s = DaemonStatistics()
        s.uptimeSeconds = Double(Nanos.now().rawValue - startedAt.rawValue) / 1e9
        s.ringCapacity = ring.capacity
        s.published = ring.publishedSequence
        s.subjects = subjects.count
        s.sources = sources.map { src in (src.name, src.counters()) }
        s.counters = AlertCode.allCases.map { code in
            ("tickwire_alerts_total", ("rule", code.name), alerts.counters.fired(code), "Alerts raised, per rule.")
        } + AlertCode.allCases.map { code in
            ("tickwire_alerts_suppressed_total", ("rule", code.name), alerts.counters.suppressed(code), "Alerts held back by a rule's cooldown.")
        } + RiskLimit.allCases.map { limit in
            ("tickwire_trades_rejected_total", ("reason", limit.rawValue), risk.rejected(limit), "Trades refused by the pre-trade risk check, per limit.")
        }
        if let t = trades?.counters {
            for (outcome, n) in [("accepted", t.accepted), ("duplicate", t.duplicates), ("rejected", t.rejected), ("malformed", t.malformed)] {
                s.counters.append(("tickwire_trades_total", ("outcome", outcome), UInt64(n), "Trade submissions by outcome (rejected includes risk, validation and authentication)."))
            }
            s.counters.append(("tickwire_trades_journal_failures_total", ("", ""), UInt64(t.journalFailures), "Times the trade journal stopped on a failure (a full disk)."))
            s.counters.append(("tickwire_trades_journal_resumes_total", ("", ""), UInt64(t.journalResumes), "Times the trade journal was reopened once writes worked again."))
            s.counters.append(("tickwire_trades_journal_read_failures_total", ("", ""), UInt64(t.journalReadFailures),
                               "Trades refused because the journal record their answer rests on could not be read back (damage, an I/O error)."))
        }
        if let r = trades?.replicationStatus, let t = trades?.counters {
            s.counters.append(("tickwire_trades_replication_consumer_restarts_total", ("", ""), UInt64(t.consumerRestarts),
                               "Replicated trading: times the log's consumer stalled and was replaced."))
            s.counters.append(("tickwire_trades_replication_rollbacks_total", ("", ""), UInt64(t.rollbacks),
                               "Replicated trading: times the journal was rolled back because the log no longer held what had been applied from it."))
            s.counters.append(("tickwire_trades_replication_spot_mismatches_total", ("", ""), UInt64(t.spotMismatches),
                               "Replicated trading: once-a-second reads of the last applied record that the stream's leader did not bear out."))
            s.counters.append(("tickwire_trades_replication_putback_files_damaged_total", ("", ""), UInt64(t.putBackFilesDamaged),
                               "Replicated trading: put-back files found damaged at a start (their trades are in journal/quarantine/, to check with tickwire audit)."))
            s.gauges += [
                ("tickwire_trades_replication_applied", Double(r.applied), "Replicated trading: the last sequence of the log applied to the journal."),
                ("tickwire_trades_replication_ready", r.ready ? 1 : 0, "Replicated trading: 1 while caught up with the log and taking trades."),
                ("tickwire_md_lease_active", lease?.isActive() == true ? 1 : 0, "Active/active: 1 while this daemon holds the market-data lease and publishes."),
            ]
        }
        s.counters.append(("tickwire_publish_failures_total", ("", ""), publisher?.failed.load(ordering: .relaxed) ?? 0,
                           "Messages libzmq refused to send (counted; the feed goes on)."))
        if let b = publisher?.budget {
            let bytes = Double(PublishBudgetMonitor.bytesPerMessage)
            s.counters.append(("tickwire_publish_subscribers_cut_total", ("", ""), b.cut.load(ordering: .relaxed),
                               "Remote subscribers disconnected for stalling while the queues were over the memory budget."))
            s.gauges += [
                ("tickwire_publish_subscribers", Double(b.subscribers.load(ordering: .relaxed)), "Remote subscribers connected to the PUB socket."),
                ("tickwire_publish_stalled_subscribers", Double(b.stalled.load(ordering: .relaxed)), "Remote subscribers pushed back (window shut or send buffer full) at the last sample (100 ms)."),
                ("tickwire_publish_high_water_mark", Double(b.highWaterMark), "Messages each remote subscriber may have queued (SNDHWM)."),
                ("tickwire_publish_memory_budget_bytes", Double(b.budgetBytes), "What all remote subscribers' queues together may hold ([publish] memory_budget_mb)."),
                ("tickwire_publish_queued_bound_bytes", Double(b.heldBoundMessages.load(ordering: .relaxed)) * bytes, "At most what the subscribers' queues hold now (messages times \(PublishBudgetMonitor.bytesPerMessage) bytes)."),
            ]
        }
        if let n = natsPublisher {
            s.counters += [
                ("tickwire_nats_sent_total", ("", ""), n.sent.load(ordering: .relaxed), "Messages published to NATS."),
                ("tickwire_nats_failed_total", ("reason", "queue_full"), n.handoff.dropped.load(ordering: .relaxed),
                 "Messages not published to NATS: the NATS thread was a queue behind (queue_full), or no server took them (send_failed)."),
                ("tickwire_nats_failed_total", ("reason", "send_failed"), n.failed.load(ordering: .relaxed),
                 "Messages not published to NATS: the NATS thread was a queue behind (queue_full), or no server took them (send_failed)."),
                ("tickwire_nats_disconnects_total", ("", ""), n.connectionEvents.disconnects.load(ordering: .relaxed), "NATS connections lost."),
                ("tickwire_nats_reconnects_total", ("", ""), n.connectionEvents.reconnects.load(ordering: .relaxed), "NATS reconnections (to any server of the list)."),
                ("tickwire_nats_gap_notices_total", ("", ""), n.gapNotices.load(ordering: .relaxed), "GAP notices published on SYS.NATS.GAP.<STREAM>."),
                ("tickwire_nats_reported_lost_total", ("", ""), n.reportedLost.load(ordering: .relaxed), "Messages NATS subscribers were told they missed."),
                ("tickwire_nats_snapshots_total", ("outcome", "served"), n.snapshotsServed.load(ordering: .relaxed), "Late joiners' snapshot requests on SYS.NATS.SNAPSHOT, by outcome."),
                ("tickwire_nats_snapshots_total", ("outcome", "malformed"), n.snapshotRequestsMalformed.load(ordering: .relaxed), "Late joiners' snapshot requests on SYS.NATS.SNAPSHOT, by outcome."),
            ]
            s.gauges.append(("tickwire_nats_connected", n.isConnected ? 1 : 0, "1 while the NATS publisher is connected to a server."))
        }
        s.counters.append(("tickwire_store_events_total", ("", ""), storeAppended.load(ordering: .relaxed), "Events appended to the store."))
        s.counters.append(("tickwire_store_errors_total", ("", ""), storeErrors.load(ordering: .relaxed), "Store appends or flushes that failed."))
        s.counters.append(("tickwire_store_lost_events_total", ("", ""), storeLost.load(ordering: .relaxed),
                           "Events the store could not keep (a failed write, or while writing was suspended after one)."))
        s.counters.append(("tickwire_store_out_of_window_total", ("", ""), storeOutOfWindow.load(ordering: .relaxed),
                           "Relayed events published but not stored: event time further from now than [feeds] relay_store_window_s."))
        s.histograms = [("tickwire_journal_fsync_seconds", "The trade journal's fdatasync per group commit.", "", journalSyncs),
                        ("tickwire_store_flush_seconds", "Time to write and fdatasync the store's open partitions.", "", storeWrites),
                        ("tickwire_publish_latency_seconds", "Known time to hand-off to ZeroMQ, sampled on every 16th published message.", "", publishLatency)]
        s.counters.append(("tickwire_ring_missed_wakes_total", ("", ""), ring.missedWakes,
                           "Ring sleeps that ran to their backstop although what they waited for had come (lost wake-ups; 0 unless the wake protocol has a bug)."))
        monitorPages?.addStatistics(to: &s)
        s.consumers = consumers.map { ($0.name, $0.counters) }
        let hubCounters = hub.consumerCounters
        if let hubCounters { s.consumers.append((SubscriptionHub.consumerName, hubCounters)) }
        // Occupancy: how much of the ring the furthest-behind blocking consumer still has to read.
        s.ringOccupancy = Double(consumers.filter { $0.policy == .blocking }.map { $0.counters.lag }.max() ?? 0) / Double(ring.capacity)
        for sub in hub.subscriptions {
            var c = hubCounters ?? ConsumerCounters()
            c.delivered = sub.delivered
            c.dropped = sub.gaps == 0 ? 0 : c.dropped
            s.consumers.append(("in-process:\(sub.name)", c))
        }
        return s
    }

    /// This daemon's part in an active/active pair, for the monitor: its role for market data (the lease) and
    /// its health for trades (caught up with the log, or why it stopped).
    private func replicationPeers() -> [MonitorPeer] {
        guard let status = trades?.replicationStatus else { return [] }
        let role = lease.map { $0.isActive() ? "publishing market data" : "standby for market data" } ?? ""
        let health = status.broken.map { "STOPPED: \($0)" } ?? (status.ready ? "trading" : "catching up with the log")
        return [MonitorPeer(name: status.node, role: role, health: health,
                            detail: "log applied through \(status.applied) (known through \(status.logKnownThrough)); cluster \(status.cluster.isEmpty ? "unreachable" : status.cluster)")]
    }

    /// The NATS bus as the monitor shows it: this daemon's publisher, connected or not, and what it sent.
    private func natsPeers() -> [MonitorPeer] {
        guard let n = natsPublisher else { return [] }
        let sent = n.sent.load(ordering: .relaxed), failed = n.failed.load(ordering: .relaxed)
        return [MonitorPeer(name: "NATS bus", role: "market-data publisher", health: n.isConnected ? "connected" : "DISCONNECTED",
                            detail: "\(sent) sent, \(failed) not sent (reported as gaps); servers \(config.natsServers.joined(separator: ","))")]
    }

    // MARK: - Wiring

    /// Appends what the ring carries, flushes (fdatasync) at least once a second and when the feed goes quiet,
    /// and on shutdown flushes and seals every trading date before today. A write error (a full disk) is logged
    /// with its file and errno and counted; the writer counts the events it could not keep, retries by itself
    /// every second, and reports the range lost when writing resumes. The feed goes on throughout.
    ///
    /// Events from a `zmq:` relay (`windowed[source]`) whose event time is further than `relayStoreWindowSeconds`
    /// from now are not stored (counted in `tickwire_store_out_of_window_total`); they were published all the same.
    private func runStoreWriter(_ writer: StoreWriter, _ consumer: RingConsumer, windowed: [Bool]) {
        var lastFlush = Nanos.now()
        var lastDayCheck: Int64?
        var dirty = false
        let window = Int64(min(config.relayStoreWindowSeconds, 100 * 366 * 86_400)) * Nanos.perSecond
        let anyWindowed = window > 0 && windowed.contains(true)
        var now = Nanos.now().rawValue
        func flush() {
            let t0 = Nanos.now()
            do { try writer.flush() } catch {
                storeErrors.add(1, ordering: .relaxed)
                logger.error("store flush failed: \(error)")
            }
            storeWrites.record(nanos: Nanos.now().rawValue - t0.rawValue)
            storeLost.store(writer.lostEvents, ordering: .relaxed)
            lastFlush = Nanos.now()
            dirty = false
        }
        while true {
            if anyWindowed { now = Nanos.now().rawValue }
            let n = consumer.poll(maxBatch: 4096, timeoutNanos: 200_000_000) { event in
                if anyWindowed, Int(event.source) < windowed.count, windowed[Int(event.source)],
                   event.eventTime.rawValue < now - window || event.eventTime.rawValue > now + window {
                    storeOutOfWindow.add(1, ordering: .relaxed)
                    return
                }
                do { try writer.append(event) } catch {
                    storeErrors.add(1, ordering: .relaxed)
                    logger.error("store append failed: \(error)")
                }
            }
            if n < 0 { break }
            if n > 0 {
                dirty = true
                storeAppended.add(UInt64(n), ordering: .relaxed)
                storeLost.store(writer.lostEvents, ordering: .relaxed)
            }
            if dirty && (n == 0 || Nanos.now().rawValue - lastFlush.rawValue >= Nanos.perSecond) { flush() }
            // Once a minute (and at start): dates before today go to the sealer whole.
            let t = tw_monotonic_ns()
            if lastDayCheck.map({ t - $0 >= 60 * Nanos.perSecond }) ?? true {
                lastDayCheck = t
                do {
                    let handed = try writer.closeDays(before: Self.startOfToday())
                    if !handed.isEmpty { logger.info("store: sealing \(handed.count) partitions of finished dates") }
                } catch {
                    logger.error("store: closing finished dates failed: \(error)")
                }
            }
        }
        flush()
        do {
            try writer.handOverAll(before: Self.startOfToday())
            try writer.close()
        } catch {
            logger.error("store close failed: \(error)")
        }
        // Waits for what was handed over: today's logs become chunks, finished dates segments.
        writer.sealer?.finish()
        let sealed = writer.sealer?.sealed
        if let sealed, sealed.chunks + sealed.days > 0 {
            logger.info("store sealed \(sealed.chunks) chunk requests and \(sealed.days) dates (\(sealed.failures) failed)")
        }
    }

    /// Events a store log takes before it is sealed as a chunk: bounds the tail a read of today builds in memory.
    static let storeChunkEvents = 1 << 18

    static func startOfToday() -> Nanos { Nanos(Nanos.now().rawValue / Nanos.perDay * Nanos.perDay) }

    /// Alerts and risk marks share one parked, lossy consumer: neither may hold the feed back, and on two cores
    /// one thread for both is cheaper than two. Alerts are collected during a batch and published after it.
    private func runAnalytics(_ consumer: RingConsumer) {
        let marker = risk.makeMarker(subjects: subjects)
        var raised: [Event] = []
        raised.reserveCapacity(64)
        var lastTick = Nanos.now(), lastRisk = Nanos.now()
        var riskSubjects: [String: SubjectID] = [:]
        while true {
            let n = consumer.poll(maxBatch: 256, timeoutNanos: 100_000_000) { event in
                alerts.process(event) { raised.append($0) }
                marker.mark(event)
            }
            if n < 0 { break }
            let now = Nanos.now()
            if now.rawValue - lastTick.rawValue >= 100_000_000 {
                alerts.tick(now: now) { raised.append($0) }
                lastTick = now
            }
            raised.withUnsafeBufferPointer { batch in
                var done = 0
                while done < batch.count { done += ring.publish(contentsOf: UnsafeBufferPointer(rebasing: batch[done...])) }
            }
            if !raised.isEmpty { publishStage.kick() }
            for alert in raised { recentAlerts.record(alert, subject: subjects.text(alert.subjectID)) }
            raised.removeAll(keepingCapacity: true)
            // Limit use, once a second per desk with trades: RISK.<DESK>.
            if now.rawValue - lastRisk.rawValue >= 1_000_000_000 {
                lastRisk = now
                for desk in risk.desks {
                    let id = riskSubjects[desk] ?? subjects.intern(text: "RISK.\(Subject.sanitizeToken(desk))")
                    riskSubjects[desk] = id
                    let use = risk.usage(desk: desk)
                    ring.publish(Event(subjectID: id, kind: .risk, eventTime: now, knownTime: now,
                                       a: use.position, b: use.notional, c: use.pnl, d: use.usedBasisPoints))
                }
                if !risk.desks.isEmpty { publishStage.kick() }
            }
        }
    }

    /// The store writer and alerts/risk sleep 1 ms when caught up rather than park: a parked consumer costs the
    /// publishing thread a futex wake (and, with asymmetric fences, the consumer an IPI) for nearly every event
    /// at feed rates, on the two cores the ZeroMQ path also needs. Sleeping, each wake-up finds a batch.
    static let backgroundWait = WaitStrategy.sleep(nanoseconds: 1_000_000)

    private func spawn(_ name: String, _ body: @escaping @Sendable () -> Void) {
        running.add(1, ordering: .relaxed)
        let t = Thread { [self] in
            // The OS-level name (15 bytes at most), so top -H, perf and gdb show which stage a thread is.
            _ = tw_set_thread_name("tw-" + name)
            body()
            running.subtract(1, ordering: .releasing)
        }
        t.name = name
        t.start()
    }

    private func makeSources() throws(DaemonError) -> [EventSource] {
        let specs = config.sources.isEmpty ? ["sim"] : config.sources
        var options = FeedOptions()
        do {
            if let d = config.feedDate { options.date = try TradingDate(parsing: d) }
            if let r = config.feedRetransmit { options.retransmitEndpoint = try UDPEndpoint(parsing: r) }
        } catch {
            throw .config(ConfigError(key: "feeds", reason: error.description))
        }
        options.errorPolicy = config.feedOnError == "skip" ? .skip : .stop
        options.gapTimeoutNanos = Int64(config.feedGapTimeoutMs) * 1_000_000
        options.depthLevels = config.feedDepth
        var out = [EventSource]()
        for spec in specs {
            if spec.hasPrefix("zmq:") {
                out.append(try relaySource(spec))
                continue
            }
            if spec.hasPrefix("nats:") {
                out.append(try natsSource(spec))
                continue
            }
            let parsed: SourceSpec
            do { parsed = try SourceSpec(parsing: spec) } catch {
                throw .source(spec, error.description + ", or zmq:ENDPOINT[#PATTERN], or nats:URL[,URL][#PATTERN]")
            }
            do {
                if let source = try SourceFactory.make(parsed, options: options) {
                    out.append(source)
                } else {
                    out.append(MarketSimulator(options: simulatorOptions()))
                }
            } catch {
                throw .source(spec, "\(error)")
            }
        }
        return out
    }

    private func simulatorOptions() -> MarketSimulator.Options {
        var o = MarketSimulator.Options()
        o.rate = config.simRate
        let symbols = config.resolvedSimSymbols
        if !symbols.isEmpty { o.symbols = symbols }
        o.venues = config.simVenues
        o.seed = config.simSeed
        o.burstEverySeconds = config.simBurstEverySeconds
        o.limit = config.simLimit
        return o
    }

    private func relaySource(_ spec: String) throws(DaemonError) -> EventSource {
        let rest = spec.dropFirst(4).split(separator: "#", maxSplits: 1).map(String.init)
        var pattern: SubjectPattern? = nil
        if rest.count == 2 {
            do { pattern = try SubjectPattern(rest[1]) } catch { throw .source(spec, error.description) }
        }
        guard let endpoint = rest.first, (try? DaemonConfig.endpoint(endpoint, key: "source")) != nil else {
            throw .source(spec, "expected zmq:ENDPOINT[#PATTERN], such as zmq:tcp://10.0.0.5:5556#MD.>")
        }
        return ZMQRelaySource(endpoint: endpoint, pattern: pattern, context: context)
    }

    /// `nats:URL[,URL…][#PATTERN]`: market data from a NATS cluster (see `NATSRelaySource`).
    private func natsSource(_ spec: String) throws(DaemonError) -> EventSource {
        let rest = spec.dropFirst(5).split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        var pattern: SubjectPattern? = nil
        if rest.count == 2 {
            do { pattern = try SubjectPattern(rest[1]) } catch { throw .source(spec, error.description) }
        }
        let servers: [String]
        do { servers = try NATS.parseServers(rest.first ?? "") } catch {
            throw .source(spec, "\(error.text); expected nats:URL[,URL][#PATTERN], such as nats://10.0.0.5:4222#MD.>")
        }
        return NATSRelaySource(servers: servers, pattern: pattern, log: { [logger] in logger.notice("\($0)") })
    }

    private func openDataDirectory() throws(DaemonError) {
        let dir = config.dataDirectory
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw .dataDirectory(dir, "cannot create it: \(error.localizedDescription)")
        }
        // One daemon per data directory: a second would interleave the journal and the store.
        let path = dir + "/LOCK"
        let fd = tw_open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .dataDirectory(dir, "cannot open \(path): \(String(cString: strerror(errno)))") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            close(fd)
            throw .dataDirectory(dir, "another tickwire daemon holds \(path); stop it, or give this one another --data")
        }
        lockFD = fd
    }
}

/// Counters of a running daemon at one moment.
public struct DaemonStatistics: Sendable {
    /// Labelled counters of components: (metric name, labels, value, help).
    public var counters: [(name: String, labels: (String, String), value: UInt64, help: String)] = []
    public var histograms: [(name: String, help: String, labels: String, histogram: LatencyHistogram)] = []
    /// Unlabelled gauges of components: (metric name, value, help).
    public var gauges: [(name: String, value: Double, help: String)] = []
    public var uptimeSeconds = 0.0
    public var ringCapacity = 0
    public var ringOccupancy = 0.0
    public var published: UInt64 = 0
    public var subjects = 0
    public var sources: [(name: String, counters: [(name: String, value: UInt64)])] = []
    public var consumers: [(name: String, counters: ConsumerCounters)] = []
}

/// Hands a value to exactly one other thread that becomes its only user.
struct Unchecked<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Journaled trades replayed at start, gathered for the risk engine.

