import ArgumentParser
import Foundation
import TickwireCore
import TickwireStore

/// `tickwire query bars`: time bars per TRADE subject, as known at a moment.
struct BarsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bars",
        abstract: "Open, high, low, close, volume, VWAP and trade count per TRADE subject and interval.",
        discussion: """
            One row per subject and interval that has a trade: subject, bar_start (the interval's start; intervals \
            are aligned to the epoch, so 1m bars start on whole minutes), open, high, low, close, volume, vwap, \
            trades. Trades are taken in (event time, known time) order as known at --as-of (now when left out): \
            busted and corrected trades count as they were known then. Subjects in text order, then time.
            """)

    @Option(help: "Subject pattern; only TRADE subjects are used.") var subjects: String
    @Option(help: "Start of the event-time window (inclusive).") var from: String
    @Option(help: "End of the event-time window (exclusive).") var to: String
    @Option(help: "Bar length: 1m, 5m, 1h, 30s, 500ms, or integer nanoseconds.") var interval: String
    @Option(name: .customLong("as-of"), help: "Trades as known at this time.") var asOf: String?
    @Option(help: "csv, jsonl or arrow (an Arrow IPC stream).") var format: String = "csv"
    @OptionGroup var arrowDecimal: ArrowDecimalOption
    @Option(help: "Write to this file instead of standard output.") var out: String?
    @Option(help: "The data directory.") var data: String = "./tickwire-data"

    func run() throws {
        var query = try StoreQuery(subjects: subjects, from: from, to: to, asOf: asOf)
        // Arrow output records the as-of it used in its schema, so the run can be repeated exactly.
        if format == "arrow" { query = RunMetadata.pinned(query) }
        let step = try StoreQuery.duration(interval, field: "--interval")
        guard let fmt = Bars.Format(rawValue: format) else {
            throw ValidationError("--format must be csv, jsonl or arrow, not '\(format)'")
        }
        let reader = try StoreReader(directory: data + "/store")
        let bars = try Bars.compute(reader, query, interval: step)
        try Bars.write(bars, format: fmt, to: try ByteOutput(path: out), decimals: arrowDecimal.decimals,
                       metadata: fmt == .arrow ? RunMetadata.keyValues(command: "query bars", subjects: subjects, query) : [])
        try reader.finishRead(command: "query bars")
        if bars.isEmpty { FileHandle.standardError.write(Data("tickwire query bars: \(query.whyNothing(pattern: subjects))\n".utf8)) }
    }
}
