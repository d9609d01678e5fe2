import ArgumentParser
import TickwireCore
import TickwireStore

/// `tickwire export`: the store's events for DataFrames and query engines: an Arrow IPC stream or file, or a
/// hive-partitioned Parquet dataset.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export stored events, as known at a moment, as Arrow or a Parquet dataset.",
        discussion: """
            Formats: arrow (an Arrow IPC stream, to standard output or --out: pl.read_ipc_stream, \
            pyarrow.ipc.open_stream), arrow-file (the Arrow IPC file format, \"Feather v2\", to --out: pl.read_ipc), \
            parquet (a hive-partitioned dataset under the --out directory: date=YYYY-MM-DD/venue=XNAS/part-0.parquet; \
            DuckDB, polars and pyarrow read the directory as it is). Columns: subject, kind, event_time, known_time \
            (timestamp[ns, UTC]), price, size, side, trade_id (TRADE, BUST), bid, bid_size, ask, ask_size (QUOTE; \
            prices and sizes decimal(18,8)), flags, source, a, b, c, d (the raw payload words; docs/STORAGE.md).
            """)

    @Option(help: "Subject pattern.") var subjects: String
    @Option(help: "Start of the event-time window (inclusive).") var from: String
    @Option(help: "End of the event-time window (exclusive).") var to: String
    @Option(name: .customLong("as-of"), help: "Export as known at this time.") var asOf: String?
    @Option(help: "arrow (IPC stream), arrow-file (IPC file) or parquet (a dataset directory).") var format: String = "arrow"
    @OptionGroup var arrowDecimal: ArrowDecimalOption
    @Option(help: "The file (arrow, arrow-file) or directory (parquet) to write; arrow without it goes to standard output.") var out: String?
    @Option(help: "The data directory.") var data: String = "./tickwire-data"

    func run() throws {
        // The as-of used goes into the output's metadata (pinned to now without --as-of): the run can be repeated.
        let query = RunMetadata.pinned(try StoreQuery(subjects: subjects, from: from, to: to, asOf: asOf))
        let metadata = RunMetadata.keyValues(command: "export", subjects: subjects, query)
        guard ["arrow", "arrow-file", "parquet"].contains(format) else {
            throw ValidationError("--format must be arrow, arrow-file or parquet, not '\(format)'")
        }
        if format != "arrow" && out == nil { throw ValidationError("--format \(format) needs --out") }
        let reader = try StoreReader(directory: data + "/store")
        switch format {
        case "parquet": try ParquetExport.write(reader, query, toDirectory: out!, metadata: metadata)
        default: try Frames.writeArrow(reader, query, to: try ByteOutput(path: out), layout: format == "arrow" ? .stream : .file,
                                           decimals: arrowDecimal.decimals, metadata: metadata)
        }
        try reader.finishRead(command: "export")
    }
}
