import Foundation
import TOMLKit
import TickwireAlerts
import TickwireCore
import TickwireFeeds
import TickwireNATS
import TickwireRisk

/// A configuration mistake: the key (as `section.key`, `alerts[2].bps`), the line of the file when known, and
/// what was wrong.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let key: String
    public let reason: String
    /// The 1-based line of the TOML text the key is on (nil: not from a file, or not found).
    public let line: Int?
    public init(key: String, reason: String, line: Int? = nil) { self.key = key; self.reason = reason; self.line = line }
    public var description: String {
        let at = line.map { "config line \($0)" } ?? "config"
        return key.isEmpty ? "\(at): \(reason)" : "\(at), key '\(key)': \(reason)"
    }
}

/// Everything `tickwire run` can be told, from a TOML file and then flags. The defaults are the embedded
/// default: a simulated market on loopback, data under ./tickwire-data.
public struct DaemonConfig: Sendable, Equatable {
    public var dataDirectory = "./tickwire-data"
    public var logLevel = "info"
    /// Source specs (`sim`, `itch:PATH`, …); empty means `sim`.
    public var sources: [String] = []

    public var publishEndpoint = "tcp://127.0.0.1:5556"
    /// The most messages ZeroMQ queues for one remote subscriber before it drops for it (and the subscriber
    /// sees a gap); 0: no limit of its own (with a budget, the budget's worth). 20,000 full-feed messages are
    /// 2 s of the simulator's default rate and about 3 MB in the daemon (it was 100,000, 12 MB, before the
    /// budget): what a stalled subscriber may cost before the budget's next look cuts it.
    public var publishHighWaterMark = 20_000
    /// What all remote subscribers' queues together may hold, in MiB (at 256 bytes a queued message): when
    /// they could hold more, the longest-stalled subscribers are cut. 0: no budget, N stalled subscribers may
    /// hold N high-water marks. See `PublishBudgetMonitor`.
    public var publishMemoryBudgetMB = 512

    /// `[publish.nats]`: NATS servers of one cluster (nats://HOST:PORT) that also get every published message
    /// (empty: no NATS); with `natsRequired`, no server reachable at start stops the daemon from starting.
    public var natsServers: [String] = []
    public var natsRequired = false
    /// `[publish.nats] send_asap`: write each message as soon as the NATS thread has it, and what queued behind it
    /// in one write (true: the latency setting, ~100 µs p50 hop), or let libnats batch writes on its 1 ms flusher
    /// (false; NATS.md, BENCHMARKS.md).
    public var natsSendAsap = true
    /// `[publish] snapshot_endpoint`: a ZeroMQ REP socket answering late joiners' snapshot requests (nil: none).
    public var snapshotEndpoint: String? = nil

    /// Ring slots (a power of two).
    public var ringCapacity = 1 << 16

    public var simRate = 10_000
    public var simSymbols: [String] = []
    public var simSymbolCount: Int? = nil
    public var simVenues = ["XNAS", "XNYS"]
    public var simSeed: UInt64 = 20_191_230
    public var simBurstEverySeconds = 2.0
    public var simLimit: Int? = nil

    /// Feed options: the trading date for ITCH/LOBSTER (nil: from the file name), what to do with a bad frame
    /// or row (`stop` or `skip`), MoldUDP64 retransmission and gap timing.
    public var feedDate: String? = nil
    public var feedOnError = "stop"
    public var feedRetransmit: String? = nil
    public var feedGapTimeoutMs = 250
    /// Events a `zmq:` relay brings with an event time further than this from now (seconds) are published but not
    /// stored (each date is a partition; a foreign publisher's bad clock must not make thousands). 0: no limit.
    public var relayStoreWindowSeconds = 86_400
    /// ITCH depth on request: price levels per side published as MD.XNAS.<SYM>.BOOK (0: none).
    public var feedDepth = 0

    /// `[[alerts]]` entries as text key/values (nil: the documented default rules; empty: no alerts).
    public var alertEntries: [[String: String]]? = nil
    /// `[risk.default]` and `[risk.desks.<DESK>]` as text key/values (nil/empty: the embedded defaults).
    public var riskDefault: [String: String]? = nil
    public var riskDesks: [String: [String: String]] = [:]

    public var tradeEndpoint = "tcp://127.0.0.1:5557"
    /// The trade journal's segment size (its files roll at it and are prepared, zero-filled, at that size).
    public var journalSegmentBytes = 64 << 20
    /// `[trades] cpus = [0]`: the CPUs the trade service's thread may run on (empty: any; see
    /// `TradeServiceConfig.cpus`).
    public var tradeCPUs: [Int] = []
    /// `[trades] replication = "jetstream"`: trades go through a JetStream log that every daemon of the pair
    /// applies alike (nil: this daemon's journal alone, the embedded default).
    public var tradeReplication: TradeReplicationConfig? = nil
    /// Active/active: the market-data lease's term (ms). The holder stops publishing within it of its last renewal;
    /// the other takes over a sixth of it later (plus an election, when the cluster lost its leader).
    public var marketDataLeaseMs = 3_000
    public var metricsEndpoint = "127.0.0.1:9464"
    /// The live monitor page at `/` and its WebSocket at `/ws`, on the metrics endpoint (docs/MONITOR.md).
    public var metricsMonitor = true

    public init() {}

    /// Every key a config file may hold, by section ("" is the top level).
    static let schema: [String: Set<String>] = [
        "": ["data", "log_level", "sources", "alerts"],
        "publish": ["endpoint", "high_water_mark", "memory_budget_mb", "nats", "snapshot_endpoint"],
        "publish.nats": ["servers", "required", "send_asap"],
        "ring": ["capacity"],
        "sim": ["rate", "symbols", "venues", "seed", "burst_every_seconds", "limit"],
        "feeds": ["date", "on_error", "retransmit", "gap_timeout_ms", "depth", "relay_store_window_s"],
        "trades": ["endpoint", "journal_segment_bytes", "cpus", "replication", "nats", "node", "stream", "replicas", "ack_timeout_ms",
                   "duplicate_window_s", "md_lease_ms"],
        "risk": ["default", "desks"],
        "metrics": ["endpoint", "monitor"],
    ]

    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// Reads a TOML document. - Throws: `ConfigError` naming the unknown key or the bad value and its line, or the
    /// line and column of a syntax error.
    public static func parse(toml text: String) throws(ConfigError) -> DaemonConfig {
        do { return try parseUnlocated(toml: text) } catch {
            guard error.line == nil, let line = lineOf(key: error.key, in: text) else { throw error }
            throw ConfigError(key: error.key, reason: error.reason, line: line)
        }
    }

    private static func parseUnlocated(toml text: String) throws(ConfigError) -> DaemonConfig {
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch let e as TOMLParseError {
            throw ConfigError(key: "", reason: "TOML syntax error at line \(e.source.begin.line), column \(e.source.begin.column): \(e.description)")
        } catch {
            throw ConfigError(key: "", reason: "\(error)")
        }
        var c = DaemonConfig()
        let r = Reader(table: table, section: "")
        try r.checkKeys(allowSections: true)
        if let v = try r.string("data") { c.dataDirectory = v }
        if let v = try r.string("log_level") {
            guard logLevels.contains(v) else { throw r.bad("log_level", "'\(v)' is not one of \(logLevels.joined(separator: ", "))") }
            c.logLevel = v
        }
        if let v = try r.strings("sources") { c.sources = v }
        if let s = try r.section("publish") {
            if let v = try s.string("endpoint") { c.publishEndpoint = try endpoint(v, key: s.path("endpoint")) }
            if let v = try s.int("high_water_mark", min: 0) {
                guard v <= Int(Int32.max) else { throw s.bad("high_water_mark", "\(v) is above libzmq's limit \(Int32.max)") }
                c.publishHighWaterMark = v
            }
            if let v = try s.int("memory_budget_mb", min: 0) {
                guard v <= 1 << 20 else { throw s.bad("memory_budget_mb", "\(v) MiB is more than a TiB") }
                c.publishMemoryBudgetMB = v
            }
            if let v = try s.string("snapshot_endpoint") { c.snapshotEndpoint = try endpoint(v, key: s.path("snapshot_endpoint")) }
            if let n = try s.section("nats") {
                if let v = n.table["servers"] {
                    let text: String
                    if let one = v.string { text = one } else if let list = try n.strings("servers") {
                        text = list.joined(separator: ",")
                    } else { throw n.bad("servers", "expected a string or an array of strings") }
                    c.natsServers = try natsServers(text, key: n.path("servers"))
                } else {
                    throw n.bad("servers", "missing: [publish.nats] needs servers = \"nats://HOST:4222[,…]\"")
                }
                if let v = try n.bool("required") { c.natsRequired = v }
                if let v = try n.bool("send_asap") { c.natsSendAsap = v }
            }
        }
        if let s = try r.section("ring") {
            if let v = try s.int("capacity", min: 64) {
                guard v & (v - 1) == 0 else { throw s.bad("capacity", "\(v) is not a power of two") }
                c.ringCapacity = v
            }
        }
        if let s = try r.section("sim") {
            if let v = try s.int("rate", min: 0) { c.simRate = v }
            if let v = s.table["symbols"] {
                if let n = v.int {
                    guard n >= 1 else { throw s.bad("symbols", "a count must be at least 1") }
                    c.simSymbolCount = n
                } else if let list = try s.strings("symbols") {
                    c.simSymbols = try list.map { sym throws(ConfigError) in try token(sym, key: s.path("symbols")) }
                }
            }
            if let v = try s.strings("venues") {
                guard !v.isEmpty else { throw s.bad("venues", "at least one venue is needed") }
                c.simVenues = try v.map { x throws(ConfigError) in try token(x, key: s.path("venues")) }
            }
            if let v = try s.int("seed", min: 0) { c.simSeed = UInt64(v) }
            if let v = try s.double("burst_every_seconds", min: 0) { c.simBurstEverySeconds = v }
            if let v = try s.int("limit", min: 1) { c.simLimit = v }
        }
        if let s = try r.section("feeds") {
            if let v = try s.string("date") { c.feedDate = v }
            if let v = try s.string("on_error") {
                guard v == "stop" || v == "skip" else { throw s.bad("on_error", "'\(v)' is neither 'stop' nor 'skip'") }
                c.feedOnError = v
            }
            if let v = try s.string("retransmit") { c.feedRetransmit = v }
            if let v = try s.int("gap_timeout_ms", min: 1) { c.feedGapTimeoutMs = v }
            if let v = try s.int("relay_store_window_s", min: 0) { c.relayStoreWindowSeconds = v }
            if let v = try s.int("depth", min: 0) {
                let most = ITCHNormalizer.maxDepthLevels
                guard v <= most else { throw s.bad("depth", "\(v) levels is more than the \(most) supported") }
                c.feedDepth = v
            }
        }
        if let v = table["alerts"] {
            guard let entries = v.array else { throw ConfigError(key: "alerts", reason: "expected [[alerts]] tables") }
            var out: [[String: String]] = []
            for (i, entry) in entries.enumerated() {
                guard let t = entry.table else { throw ConfigError(key: "alerts[\(i)]", reason: "expected a table") }
                out.append(try textValues(t, key: "alerts[\(i)]"))
            }
            c.alertEntries = out
            _ = try c.alertRules()
        }
        if let v = table["risk"] {
            guard let risk = v.table else { throw ConfigError(key: "risk", reason: "expected a [risk] table") }
            _ = try r.section("risk")
            if let d = risk["default"] {
                guard let t = d.table else { throw ConfigError(key: "risk.default", reason: "expected a [risk.default] table") }
                c.riskDefault = try textValues(t, key: "risk.default")
            }
            if let d = risk["desks"] {
                guard let desks = d.table else { throw ConfigError(key: "risk.desks", reason: "expected [risk.desks.<DESK>] tables") }
                for desk in desks.keys {
                    guard let t = desks[desk]?.table else { throw ConfigError(key: "risk.desks.\(desk)", reason: "expected a table") }
                    c.riskDesks[desk] = try textValues(t, key: "risk.desks.\(desk)")
                }
            }
            _ = try c.riskConfig()
        }
        if let s = try r.section("trades") {
            if let v = try s.string("endpoint") { c.tradeEndpoint = try endpoint(v, key: s.path("endpoint")) }
            if let v = try s.int("journal_segment_bytes", min: 4096) { c.journalSegmentBytes = v }
            if let v = try s.ints("cpus") {
                let cpus = Int(sysconf(Int32(_SC_NPROCESSORS_CONF)))
                if let bad = v.first(where: { !(0..<cpus).contains($0) }) { throw s.bad("cpus", "CPU \(bad) is not one of this machine's 0…\(cpus - 1)") }
                c.tradeCPUs = v
            }
            let mode = try s.string("replication") ?? "none"
            switch mode {
            case "none":
                for key in ["nats", "node", "stream", "replicas", "ack_timeout_ms", "duplicate_window_s", "md_lease_ms"] where s.table[key] != nil {
                    throw s.bad(key, "only with replication = \"jetstream\"")
                }
            case "jetstream":
                guard let urls = try s.string("nats") else { throw s.bad("nats", "replication = \"jetstream\" needs the cluster's URLs, such as \"nats://h1:4222,nats://h2:4222\"") }
                let servers: [String]
                do { servers = try NATS.parseServers(urls) } catch { throw s.bad("nats", error.text) }
                guard let node = try s.string("node") else { throw s.bad("node", "replication = \"jetstream\" needs this daemon's name (a token such as \"a\")") }
                _ = try token(node, key: s.path("node"))
                var rep = TradeReplicationConfig(servers: servers, node: node)
                if let v = try s.string("stream") {
                    guard !v.isEmpty, v.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != 0x2e && $0 != 0x2a && $0 != 0x3e }) else {
                        throw s.bad("stream", "'\(v)' is not a JetStream stream name (printable, no spaces, '.', '*' or '>')")
                    }
                    rep.stream = v
                }
                if let v = try s.int("replicas", min: 1) {
                    guard v <= 5 else { throw s.bad("replicas", "JetStream keeps at most 5 replicas, not \(v)") }
                    rep.replicas = v
                }
                if let v = try s.int("ack_timeout_ms", min: 100) { rep.ackTimeoutMs = Int64(v) }
                if let v = try s.int("duplicate_window_s", min: 1) { rep.duplicateWindowSeconds = v }
                if let v = try s.int("md_lease_ms", min: 600) { c.marketDataLeaseMs = v }
                c.tradeReplication = rep
            default:
                throw s.bad("replication", "'\(mode)' is not one of none, jetstream")
            }
        }
        if let s = try r.section("metrics") {
            if let v = try s.string("endpoint") { c.metricsEndpoint = v }
            if let v = try s.bool("monitor") { c.metricsMonitor = v }
        }
        return c
    }

    /// A ZeroMQ endpoint must name its transport.
    public static func endpoint(_ v: String, key: String) throws(ConfigError) -> String {
        guard v.hasPrefix("tcp://") || v.hasPrefix("ipc://") || v.hasPrefix("inproc://") else {
            throw ConfigError(key: key, reason: "'\(v)' is not a ZeroMQ endpoint such as tcp://127.0.0.1:5556")
        }
        return v
    }

    /// A NATS server list ("nats://h1:4222,nats://h2:4222"). - Throws: `ConfigError` naming the URL that is not one.
    public static func natsServers(_ v: String, key: String) throws(ConfigError) -> [String] {
        do { return try NATS.parseServers(v) } catch { throw ConfigError(key: key, reason: error.text) }
    }

    /// A venue or symbol must be one subject token.
    public static func token(_ v: String, key: String) throws(ConfigError) -> String {
        do { _ = try Subject(v) } catch { throw ConfigError(key: key, reason: "'\(v)' is not a subject token: \(error.reason)") }
        guard !v.contains(".") else { throw ConfigError(key: key, reason: "'\(v)' must be one token, without dots") }
        return v
    }

    /// The alert rules to run: the documented defaults when there is no `[[alerts]]`, none for an empty list.
    /// - Throws: `ConfigError` naming the entry (`alerts[2].bps`) that `AlertRule.parse` refuses; `parse(toml:)`
    ///   has already checked a file's entries, so only a config built in code can fail here.
    public func alertRules() throws(ConfigError) -> [AlertRule] {
        guard let entries = alertEntries else { return AlertRule.defaults }
        do { return try AlertRule.parseAll(entries) } catch {
            throw ConfigError(key: "alerts[\(error.index)]" + (error.key.map { ".\($0)" } ?? ""),
                              reason: (error.rule.map { "rule '\($0)': " } ?? "") + error.reason)
        }
    }

    /// The risk limits: `[risk.default]` over the embedded defaults, each `[risk.desks.<DESK>]` over that.
    /// - Throws: `ConfigError` naming the table and key (`risk.desks.DESK7.max_loss`); as for `alertRules()`,
    ///   only a config built in code can fail here.
    public func riskConfig() throws(ConfigError) -> RiskConfig {
        do { return try RiskConfig.parse(default: riskDefault, desks: riskDesks) } catch {
            throw ConfigError(key: error.table + (error.key.map { ".\($0)" } ?? ""), reason: error.reason)
        }
    }

    /// The line of `text` that holds `key` (`section.key`, `risk.desks.DESK7.max_loss`, `alerts[2].bps`, or a
    /// table's own name): the key's line inside its table, else the table's header. Nil when not found (a key
    /// written as a dotted key or in an inline table). TOMLKit does not report where a value was read.
    static func lineOf(key: String, in text: String) -> Int? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        func name(_ header: String) -> String {
            String(header.filter { $0 != " " && $0 != "\t" && $0 != "\"" })
        }
        /// The header line of a table (`occurrence` nil) or of the n-th entry of an array of tables; "" is the top.
        func header(_ table: String, occurrence: Int?) -> Int? {
            if table.isEmpty { return occurrence == nil ? -1 : nil }
            var seen = 0
            for (i, l) in lines.enumerated() {
                if let n = occurrence {
                    guard l.hasPrefix("[["), let end = l.range(of: "]]") else { continue }
                    if name(String(l[l.index(l.startIndex, offsetBy: 2)..<end.lowerBound])) == table {
                        if seen == n { return i }
                        seen += 1
                    }
                } else if l.hasPrefix("["), !l.hasPrefix("[["), let end = l.firstIndex(of: "]"),
                          name(String(l[l.index(after: l.startIndex)..<end])) == table {
                    return i
                }
            }
            return nil
        }
        /// The line of `key = …` in the table whose header is at `start` (-1: the top level).
        func keyLine(_ key: String, after start: Int) -> Int? {
            var i = start + 1
            while i < lines.count, !lines[i].hasPrefix("[") {
                let l = lines[i]
                if l.hasPrefix(key), l.dropFirst(key.count).drop(while: { $0 == " " || $0 == "\t" }).first == "=" { return i }
                i += 1
            }
            return nil
        }
        var table = key, field: String? = nil, occurrence: Int? = nil
        if key.hasPrefix("alerts["), let close = key.firstIndex(of: "]") {
            occurrence = Int(key[key.index(key.startIndex, offsetBy: 7)..<close])
            table = "alerts"
            let rest = key[key.index(after: close)...]
            if rest.hasPrefix(".") { field = String(rest.dropFirst()) }
            guard occurrence != nil, let h = header(table, occurrence: occurrence) else { return nil }
            return (field.flatMap { keyLine($0, after: h) } ?? h) + 1
        }
        // Longest table first: `risk.desks.DESK7` before `risk.desks`; a key alone is at the top level.
        var splits: [(String, String?)] = [(key, nil)]
        var dot = key.endIndex
        while let d = key[..<dot].lastIndex(of: ".") {
            splits.append((String(key[..<d]), String(key[key.index(after: d)...])))
            dot = d
        }
        splits.append(("", key))
        for (t, f) in splits {
            table = t; field = f
            guard let h = header(table, occurrence: nil) else { continue }
            if let f { if let k = keyLine(f, after: h) { return k + 1 } else if !t.isEmpty { return h + 1 } else { continue } }
            return h + 1
        }
        return nil
    }

    /// The simulator's symbols: a list, a count of the built-in ones (or generated beyond them), or the default 24.
    public var resolvedSimSymbols: [String] {
        if !simSymbols.isEmpty { return simSymbols }
        guard let n = simSymbolCount else { return [] }
        let builtIn = MarketSimulator.defaultSymbols
        return (0..<n).map { $0 < builtIn.count ? builtIn[$0] : "SYM\($0)" }
    }
}

/// A table's scalar values as text (numbers as written), for the alert and risk parsers, which name their own
/// keys in errors.
private func textValues(_ t: TOMLTable, key: String) throws(ConfigError) -> [String: String] {
    var out: [String: String] = [:]
    for k in t.keys {
        let v = t[k]!
        if let s = v.string { out[k] = s }
        else if let i = v.int { out[k] = String(i) }
        else if let d = v.double { out[k] = String(d) }
        else if let b = v.bool { out[k] = b ? "true" : "false" }
        else { throw ConfigError(key: "\(key).\(k)", reason: "expected a string, number or boolean") }
    }
    return out
}

/// Walks one TOML table, turning type mistakes into errors that name the key.
private struct Reader {
    let table: TOMLTable
    let section: String

    init(table: TOMLTable, section: String) { self.table = table; self.section = section }

    func path(_ key: String) -> String { section.isEmpty ? key : "\(section).\(key)" }
    func bad(_ key: String, _ reason: String) -> ConfigError { ConfigError(key: path(key), reason: reason) }

    func checkKeys(allowSections: Bool) throws(ConfigError) {
        let allowed = DaemonConfig.schema[section] ?? []
        for key in table.keys.sorted() {
            if allowed.contains(key) { continue }
            if allowSections && DaemonConfig.schema[key] != nil && !key.isEmpty { continue }
            let known = (allowed.union(allowSections ? Set(DaemonConfig.schema.keys.filter { !$0.isEmpty }) : [])).sorted()
            throw bad(key, "unknown key; known here: \(known.joined(separator: ", "))")
        }
    }

    func section(_ name: String) throws(ConfigError) -> Reader? {
        guard let v = table[name] else { return nil }
        guard let t = v.table else { throw bad(name, "expected a [\(path(name))] table") }
        let r = Reader(table: t, section: path(name))
        try r.checkKeys(allowSections: false)
        return r
    }

    func string(_ key: String) throws(ConfigError) -> String? {
        guard let v = table[key] else { return nil }
        guard let s = v.string else { throw bad(key, "expected a string") }
        return s
    }

    func strings(_ key: String) throws(ConfigError) -> [String]? { try array(key, of: "strings") { $0.string } }

    func ints(_ key: String) throws(ConfigError) -> [Int]? { try array(key, of: "integers") { $0.int } }

    private func array<T>(_ key: String, of what: String, _ item: (TOMLValueConvertible) -> T?) throws(ConfigError) -> [T]? {
        guard let v = table[key] else { return nil }
        guard let a = v.array else { throw bad(key, "expected an array of \(what)") }
        var out = [T]()
        for element in a {
            guard let x = item(element) else { throw bad(key, "expected an array of \(what)") }
            out.append(x)
        }
        return out
    }

    func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let v = table[key] else { return nil }
        guard let b = v.bool else { throw bad(key, "expected true or false") }
        return b
    }

    func int(_ key: String, min: Int) throws(ConfigError) -> Int? {
        guard let v = table[key] else { return nil }
        guard let i = v.int else { throw bad(key, "expected an integer") }
        guard i >= min else { throw bad(key, "\(i) is below the minimum \(min)") }
        return i
    }

    func double(_ key: String, min: Double) throws(ConfigError) -> Double? {
        guard let v = table[key] else { return nil }
        guard let d = v.double ?? v.int.map(Double.init) else { throw bad(key, "expected a number") }
        guard d >= min else { throw bad(key, "\(d) is below the minimum \(min)") }
        return d
    }
}
