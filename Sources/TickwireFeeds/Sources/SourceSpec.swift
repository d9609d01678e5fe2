import TickwireCore

/// Which feed to read, as written on the command line (`--source SPEC`) or in the config file.
///
/// `sim` · `itch:PATH` · `moldudp64:ENDPOINT_A[,ENDPOINT_B]` · `tardis-trades:PATH` · `tardis-quotes:PATH` ·
/// `lobster:PATH`. Endpoints are `[udp://]HOST:PORT`, IPv4, unicast or multicast.
public enum SourceSpec: Equatable, Hashable, Sendable, CustomStringConvertible {
    case sim
    case itch(path: String)
    case moldUDP64(lineA: UDPEndpoint, lineB: UDPEndpoint?)
    case tardisTrades(path: String)
    case tardisQuotes(path: String)
    case lobster(path: String)

    public static let forms = ["sim", "itch:PATH", "moldudp64:ENDPOINT_A[,ENDPOINT_B]", "tardis-trades:PATH",
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
            let parts = arg.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard (1...2).contains(parts.count), !parts.contains(where: \.isEmpty) else {
                throw fail("'moldudp64:' takes one or two endpoints separated by a comma")
            }
            do throws(FeedConfigError) {
                let a = try UDPEndpoint(parsing: parts[0])
                let b = parts.count == 2 ? try UDPEndpoint(parsing: parts[1]) : nil
                if a == b { throw FeedConfigError("lines A and B are the same endpoint \(a)") }
                self = .moldUDP64(lineA: a, lineB: b)
            } catch { throw fail(error.message) }
        default:
            throw fail("unknown source kind '\(kind)'")
        }
    }

    public var description: String {
        switch self {
        case .sim: "sim"
        case .itch(let p): "itch:\(p)"
        case .moldUDP64(let a, let b): "moldudp64:\(a)" + (b.map { ",\($0)" } ?? "")
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
        case .moldUDP64(let a, let b): return try MoldUDP64Source(lineA: a, lineB: b, options: options)
        case .tardisTrades(let path): return TardisCSVSource(path: path, kind: .trades, options: options)
        case .tardisQuotes(let path): return TardisCSVSource(path: path, kind: .quotes, options: options)
        case .lobster(let path): return try LOBSTERSource(path: path, options: options)
        }
    }
}
