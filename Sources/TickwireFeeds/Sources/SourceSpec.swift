import TickwireCore

/// Which feed to read, as written on the command line (`--source SPEC`) or in the config file.
///
/// `sim` · `itch:PATH` · `moldudp64:ENDPOINT_A[,ENDPOINT_B][?KEY=VALUE&…]` · `tardis-trades:PATH` ·
/// `tardis-quotes:PATH` · `lobster:PATH`. Endpoints are `[udp://]HOST:PORT`, IPv4, unicast or multicast.
/// MoldUDP64 keys: see `MoldUDP64Settings`.
public enum SourceSpec: Equatable, Hashable, Sendable, CustomStringConvertible {
    case sim
    case itch(path: String)
    case moldUDP64(lineA: UDPEndpoint, lineB: UDPEndpoint?, settings: MoldUDP64Settings = MoldUDP64Settings())
    case tardisTrades(path: String)
    case tardisQuotes(path: String)
    case lobster(path: String)

    public static let forms = ["sim", "itch:PATH", "moldudp64:ENDPOINT_A[,ENDPOINT_B][?snapshot=HOST:PORT&…]", "tardis-trades:PATH",
                               "tardis-quotes:PATH", "lobster:PATH"]

    /// - Throws: `FeedConfigError` naming the spec and what was expected.
    public init(parsing text: String) throws(FeedConfigError) {
        func fail(_ why: String) -> FeedConfigError {
            FeedConfigError("source '\(text)': \(why); expected one of \(SourceSpec.forms.joined(separator: ", "))")
        }
        let t = text.trimmingCharacters(in: " ")
        if t.isEmpty { throw fail("it is empty") }
        if t == "sim" { self = .sim; return }
        guard let colon = t.firstIndex(of: ":") else { throw fail("unknown source kind '\(t)'") }
        let kind = String(t[..<colon]), arg = String(t[t.index(after: colon)...])
        switch kind {
        case "sim": throw fail("'sim' takes no argument")
        case "itch", "tardis-trades", "tardis-quotes", "lobster":
            if arg.isEmpty { throw fail("'\(kind):' needs a file path after the colon") }
            switch kind {
            case "itch": self = .itch(path: arg)
            case "tardis-trades": self = .tardisTrades(path: arg)
            case "tardis-quotes": self = .tardisQuotes(path: arg)
            default: self = .lobster(path: arg)
            }
        case "moldudp64":
            let query = arg.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            let settings: MoldUDP64Settings
            do { settings = try MoldUDP64Settings(parsing: query.count == 2 ? query[1] : "") } catch { throw fail(error.message) }
            let parts = query[0].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard (1...2).contains(parts.count), !parts.contains(where: \.isEmpty) else {
                throw fail("'moldudp64:' takes one or two endpoints separated by a comma")
            }
            do throws(FeedConfigError) {
                let a = try UDPEndpoint(parsing: parts[0])
                let b = parts.count == 2 ? try UDPEndpoint(parsing: parts[1]) : nil
                if a == b { throw FeedConfigError("lines A and B are the same endpoint \(a)") }
                self = .moldUDP64(lineA: a, lineB: b, settings: settings)
            } catch { throw fail(error.message) }
        default:
            throw fail("unknown source kind '\(kind)'")
        }
    }

    public var description: String {
        switch self {
        case .sim: "sim"
        case .itch(let p): "itch:\(p)"
        case .moldUDP64(let a, let b, let s): "moldudp64:\(a)" + (b.map { ",\($0)" } ?? "") + s.query
        case .tardisTrades(let p): "tardis-trades:\(p)"
        case .tardisQuotes(let p): "tardis-quotes:\(p)"
        case .lobster(let p): "lobster:\(p)"
        }
    }
}

/// Builds the source a spec names. The simulator is built by the daemon (it owns its configuration), so `.sim`
/// gives nil.
public enum SourceFactory {
    /// - Throws: `FeedConfigError` when the spec's file has no usable date, a socket cannot be bound, and so on.
    public static func make(_ spec: SourceSpec, options: FeedOptions) throws -> EventSource? {
        switch spec {
        case .sim: return nil
        case .itch(let path): return try ITCHFileSource(path: path, options: options)
        case .moldUDP64(let a, let b, let s):
            var o = options
            s.apply(to: &o)
            return try MoldUDP64Source(lineA: a, lineB: b, options: o)
        case .tardisTrades(let path): return TardisCSVSource(path: path, kind: .trades, options: options)
        case .tardisQuotes(let path): return TardisCSVSource(path: path, kind: .quotes, options: options)
        case .lobster(let path): return try LOBSTERSource(path: path, options: options)
        }
    }
}

/// The keys a `moldudp64:` spec may carry after `?`, joined with `&`:
/// `snapshot=HOST:PORT` (a GLIMPSE-style SoupBinTCP snapshot server), `user=`, `password=` (its login),
/// `snapshot_timeout_ms=`, `gap_timeout_ms=`, `request_delay_ms=`, `max_request=` (messages per re-request,
/// 1–65,534), `max_outstanding=` (re-requests at once), `max_jump=` (the sequence window; see
/// `FeedOptions.maxSequenceJump`). Each overrides `FeedOptions` for that source.
public struct MoldUDP64Settings: Equatable, Hashable, Sendable {
    public var snapshot: UDPEndpoint? = nil
    public var username: String? = nil
    public var password: String? = nil
    public var snapshotTimeoutMillis: Int? = nil
    public var gapTimeoutMillis: Int? = nil
    public var requestDelayMillis: Int? = nil
    public var maxRequest: Int? = nil
    public var maxOutstanding: Int? = nil
    public var maxJump: UInt64? = nil

    public static let keys = ["snapshot", "user", "password", "snapshot_timeout_ms", "gap_timeout_ms", "request_delay_ms",
                              "max_request", "max_outstanding", "max_jump"]

    public init() {}

    /// - Throws: `FeedConfigError` naming the key and what it takes.
    public init(parsing query: String) throws(FeedConfigError) {
        if query.isEmpty { return }
        for pair in query.split(separator: "&", omittingEmptySubsequences: false) {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard kv.count == 2, !kv[0].isEmpty else {
                throw FeedConfigError("'\(pair)' is not KEY=VALUE; keys: \(Self.keys.joined(separator: ", "))")
            }
            let (k, v) = (kv[0], kv[1])
            func int(_ range: ClosedRange<Int>) throws(FeedConfigError) -> Int {
                guard let n = Int(v), range.contains(n) else {
                    throw FeedConfigError("\(k)=\(v): expected an integer from \(range.lowerBound) to \(range.upperBound)")
                }
                return n
            }
            switch k {
            case "snapshot":
                var t = v
                if t.hasPrefix("tcp://") { t.removeFirst(6) }
                snapshot = try UDPEndpoint(parsing: t)
            case "user": username = v
            case "password": password = v
            case "snapshot_timeout_ms": snapshotTimeoutMillis = try int(1...3_600_000)
            case "gap_timeout_ms": gapTimeoutMillis = try int(1...3_600_000)
            case "request_delay_ms": requestDelayMillis = try int(0...60_000)
            case "max_request": maxRequest = try int(1...Int(MoldUDP64.endOfSession) - 1)
            case "max_outstanding": maxOutstanding = try int(1...65_536)
            case "max_jump": maxJump = UInt64(try int(1...Int(UInt32.max)))
            default: throw FeedConfigError("unknown key '\(k)'; keys: \(Self.keys.joined(separator: ", "))")
            }
        }
    }

    /// The keys set, as written after `?` (empty when none).
    public var query: String {
        var parts: [String] = []
        if let e = snapshot { parts.append("snapshot=\(e.host):\(e.port)") }
        if let u = username { parts.append("user=\(u)") }
        if password != nil { parts.append("password=***") }
        if let v = snapshotTimeoutMillis { parts.append("snapshot_timeout_ms=\(v)") }
        if let v = gapTimeoutMillis { parts.append("gap_timeout_ms=\(v)") }
        if let v = requestDelayMillis { parts.append("request_delay_ms=\(v)") }
        if let v = maxRequest { parts.append("max_request=\(v)") }
        if let v = maxOutstanding { parts.append("max_outstanding=\(v)") }
        if let v = maxJump { parts.append("max_jump=\(v)") }
        return parts.isEmpty ? "" : "?" + parts.joined(separator: "&")
    }

    public func apply(to o: inout FeedOptions) {
        if let e = snapshot { o.snapshotEndpoint = e }
        if let u = username { o.snapshotUsername = u }
        if let p = password { o.snapshotPassword = p }
        if let v = snapshotTimeoutMillis { o.snapshotTimeoutNanos = Int64(v) * 1_000_000 }
        if let v = gapTimeoutMillis { o.gapTimeoutNanos = Int64(v) * 1_000_000 }
        if let v = requestDelayMillis { o.requestDelayNanos = Int64(v) * 1_000_000 }
        if let v = maxRequest { o.maxMessagesPerRequest = UInt64(v) }
        if let v = maxOutstanding { o.maxOutstandingRequests = v }
        if let v = maxJump { o.maxSequenceJump = v }
    }
}
