import ArgumentParser
import TickwireCore
import TickwireStore

/// `tickwire export`: the store's events as an Apache Arrow IPC file for DuckDB, polars, pandas and Spark.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export stored events, as known at a moment, to an Apache Arrow IPC file.",
        discussion: "Columns: subject, kind, event_time, known_time (timestamp[ns, UTC]), flags, source, a, b, c, d (int64, e8 fixed point; meaning by kind as in docs/STORAGE.md).")

    @Option(help: "Subject pattern.") var subjects: String
    @Option(help: "Start of the event-time window (inclusive).") var from: String
    @Option(help: "End of the event-time window (exclusive).") var to: String
    @Option(name: .customLong("as-of"), help: "Export as known at this time.") var asOf: String?
    @Option(help: "arrow (the Arrow IPC file format).") var format: String = "arrow"
    @Option(help: "The file to write.") var out: String
    @Option(help: "The data directory.") var data: String = "./tickwire-data"

    func run() throws {
        let query = try StoreQuery(subjects: subjects, from: from, to: to, asOf: asOf)
        guard format == "arrow" else { throw ValidationError("--format must be arrow, not '\(format)'") }
        let reader = try StoreReader(directory: data + "/store")
        try ArrowExport.write(reader, query, to: out)
        try reader.finishRead(command: "export")
    }
}
