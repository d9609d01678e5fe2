import ArgumentParser
import TickwireCore
import TickwireFeeds
import Foundation

/// `tickwire decode --source SPEC [--date D] --format jsonl|text [--stats]`: a source's normalized events, no daemon.
struct Decode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a source's normalized events (the same JSONL as `tickwire tail`) without a daemon.",
        discussion: "SPEC is one of: \(SourceSpec.forms.joined(separator: ", ")). See docs/FEEDS.md.")

    @Option(help: "The source: itch:PATH, moldudp64:A[,B], tardis-trades:PATH, tardis-quotes:PATH, lobster:PATH.")
    var source: String

    @Option(help: "Trading date YYYY-MM-DD of ITCH/LOBSTER timestamps (default: from the file name).")
    var date: String?

    @Option(help: "jsonl, text, or none.")
    var format: String = "jsonl"

    @Flag(help: "Print the source's counters (per-type counts, errors, unknown orders) to stderr at the end.")
    var stats = false

    @Option(name: .customLong("on-error"), help: "stop (default) or skip: what to do with a malformed frame or row. Skipping still exits 1, with a summary on stderr.")
    var onError: String = "stop"

    @Option(help: "MoldUDP64: the re-request endpoint HOST:PORT.")
    var retransmit: String?

    @Option(name: .customLong("gap-timeout-ms"), help: "MoldUDP64: how long a gap may stay open before a GAP event.")
    var gapTimeoutMillis: Int = 250

    @Option(name: .customLong("idle-timeout-ms"), help: "MoldUDP64: stop after this long with no packet (0: never).")
    var idleTimeoutMillis: Int = 0

    @Option(help: "ITCH: price levels per side to publish as MD.XNAS.<SYM>.BOOK (0: none).")
    var depth: Int = 0

    func run() throws {
        guard (0...ITCHNormalizer.maxDepthLevels).contains(depth) else {
            throw ValidationError("--depth must be between 0 and \(ITCHNormalizer.maxDepthLevels)")
        }
        guard let format = PrintingSink.Format(rawValue: format) else {
            throw ValidationError("--format '\(self.format)': expected jsonl, text or none")
        }
        guard let policy = ErrorPolicy(rawValue: onError) else { throw ValidationError("--on-error '\(onError)': expected stop or skip") }
        let spec: SourceSpec
        var options = FeedOptions(errorPolicy: policy, gapTimeoutNanos: Int64(gapTimeoutMillis) * 1_000_000,
                                  idleTimeoutNanos: Int64(idleTimeoutMillis) * 1_000_000)
        options.depthLevels = depth
        do {
            spec = try SourceSpec(parsing: source)
            if let date { options.date = try TradingDate(parsing: date) }
            if let retransmit { options.retransmitEndpoint = try UDPEndpoint(parsing: retransmit) }
        } catch { throw ValidationError(error.description) }
        // A spec the factory cannot build (no trading date in the name, a port in use) is a usage error, like
        // any other bad argument: exit 64. Bad data found while reading is exit 1 (README, "Exit codes").
        let made: EventSource?
        do { made = try SourceFactory.make(spec, options: options) } catch { throw ValidationError("\(error)") }
        guard let feed = made else {
            throw ValidationError("'sim' is the daemon's simulator: run `tickwire run` and `tickwire tail` to see it")
        }
        let sink = PrintingSink(format: format)
        var failure: Error?
        do { try feed.run(into: sink, stop: StopSignal()) } catch { failure = error }
        sink.flush()
        if stats { FileHandle.standardError.write(Data((FeedStats.text(feed, events: sink.count) + "\n").utf8)) }
        if let failure {
            FileHandle.standardError.write(Data("tickwire decode: \(failure)\n".utf8))
            throw ExitCode.failure
        }
        // --on-error skip goes on past damage, but a run that skipped anything is not a clean run.
        if let skipped = (feed as? SkipReporting)?.skipSummary {
            FileHandle.standardError.write(Data("tickwire decode: \(skipped)\n".utf8))
            throw ExitCode.failure
        }
    }
}
