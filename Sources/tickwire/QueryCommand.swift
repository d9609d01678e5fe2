import ArgumentParser
import Foundation
import TickwireCore
import TickwireStore

/// `tickwire query …`: questions answered from the store.
struct QueryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Query the store.",
        subcommands: [AsOfJoinCommand.self, BarsCommand.self, VersionsCommand.self, ChangesCommand.self])
}

/// `tickwire query asof-join`: each trade with the quote prevailing at its time, as known at K.
struct AsOfJoinCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "asof-join",
        abstract: "Join each trade to the quote of its symbol at its event time.",
        discussion: """
            One row per trade: subject, event_time, known_time, price, size, side, then the matched quote's \
            quote_event_time, bid, bid_size, ask, ask_size (empty when none matches). The quote subject is the \
            trade subject with its last token replaced by QUOTE.
            """)

    @Option(help: "Trade subject pattern.") var trades: String
    @Option(help: "Quote subject pattern.") var quotes: String
    @Option(help: "Start of the trades' event-time window (inclusive).") var from: String
    @Option(help: "End of the trades' event-time window (exclusive).") var to: String
    @Option(name: .customLong("as-of"), help: "Both sides as known at this time.") var asOf: String?
    @Option(help: "event (the default: each trade with the quote prevailing at its event time) or known (each trade version as it arrived, with the quote known by then).")
    var time: String = "event"
    @Flag(help: "Exclude quotes at exactly the trade's time.") var strict = false
    @Option(help: "backward (prevailing), forward or nearest.") var direction: String = "backward"
    @Option(help: "Largest trade-to-quote distance: 500ms, 2s, or integer nanoseconds.") var tolerance: String?
    @Option(help: "csv, jsonl, arrow (an Arrow IPC stream) or arrow-file (the Arrow IPC file format, to --out: pl.read_ipc maps it).") var format: String
    @OptionGroup var arrowDecimal: ArrowDecimalOption
    @Flag(help: "jsonl: first a line recording the as-of moment used (now, when --as-of is left out), to repeat the run exactly.")
    var header = false
    @Option(help: "Write to this file instead of standard output.") var out: String?
    @Option(help: "The data directory.") var data: String = "./tickwire-data"

    func run() throws {
        var window = try StoreQuery(subjects: trades, from: from, to: to, asOf: asOf)
        let arrow = try ArrowWriter.Layout(format: format, out: out)
        if header || arrow != nil { window = RunMetadata.pinned(window) }
        let quotePattern: SubjectPattern
        do { quotePattern = try SubjectPattern(quotes) } catch { throw StoreError.badQuery(field: "--quotes", reason: error.description) }
        guard let dir = AsOfDirection(rawValue: direction) else {
            throw ValidationError("--direction must be backward, forward or nearest, not '\(direction)'")
        }
        guard arrow != nil || StoreReader.JoinFormat(rawValue: format) != nil else {
            throw ValidationError("--format must be csv, jsonl, arrow or arrow-file, not '\(format)'")
        }
        var join = try AsOfJoin(trades: window.subjects, quotes: quotePattern, from: window.from, to: window.to,
                                asOf: window.asOf, direction: dir, strict: strict,
                                tolerance: try tolerance.map { (t: String) throws(StoreError) -> Int64 in try StoreQuery.duration(t) })
        join.time = try StoreQuery.timeAxis(time)
        if header && format != "jsonl" { throw ValidationError("--header is for --format jsonl output") }
        let reader = try StoreReader(directory: data + "/store")
        let rows: Int
        if let fmt = StoreReader.JoinFormat(rawValue: format) {
            let output = try ByteOutput(path: out)
            if header { output.buffer += Array((RunMetadata.jsonHeader(command: "query asof-join", subjects: trades, window) + "\n").utf8) }
            rows = try reader.writeAsOfJoin(join, format: fmt, to: output)
        } else {
            let metadata = RunMetadata.keyValues(command: "query asof-join", subjects: trades, window)
            rows = try Frames.asOfJoin(reader, join) { fields in
                try ArrowWriter(fields: fields, out: try ByteOutput(path: out), layout: arrow ?? .stream, decimals: arrowDecimal.decimals, metadata: metadata)
            }
        }
        try reader.finishRead(command: "query asof-join")
        var query = window
        query.time = join.time
        if rows == 0 { FileHandle.standardError.write(Data("tickwire query asof-join: \(reader.whyNothing(query, pattern: trades))\n".utf8)) }
        if quotes != quotes.uppercased() && quotes.uppercased() != quotes.lowercased() {
            FileHandle.standardError.write(Data("tickwire query asof-join: no quote subject matches '\(quotes)': subjects are upper case; did you mean '\(quotes.uppercased())'?\n".utf8))
        }
    }
}
