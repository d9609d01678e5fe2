import ArgumentParser
import Foundation
import TickwireCore
import TickwireFeeds
import TickwireStore

/// `tickwire import`: captures straight into the store, without a daemon.
struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Load captures (ITCH, tardis CSV, LOBSTER) into the store and seal them, without a daemon.",
        discussion: "Stop any daemon on the same data directory first: the store takes one writer at a time.")

    @Option(name: .customLong("source"), help: "itch:PATH, tardis-trades:PATH, tardis-quotes:PATH or lobster:PATH. Repeatable.")
    var sources: [String]
    @Option(help: "The trading date of ITCH or LOBSTER timestamps (default: from the file name).") var date: String?
    @Flag(help: "Skip and count bad frames and rows instead of stopping at the first.") var skipErrors = false
    @Option(help: "The data directory.") var data: String = "./tickwire-data"

    func run() throws {
        guard !sources.isEmpty else { throw ValidationError("give at least one --source") }
        var options = FeedOptions(errorPolicy: skipErrors ? .skip : .stop)
        if let date {
            do { options.date = try TradingDate(parsing: date) } catch { throw ValidationError("--date: \(error)") }
        }
        let subjects = SubjectTable()
        var skipped = false
        for text in sources {
            let spec: SourceSpec
            do { spec = try SourceSpec(parsing: text) } catch { throw ValidationError("\(error)") }
            if case .moldUDP64 = spec { throw ValidationError("source '\(text)': a live feed cannot be imported; run the daemon") }
            guard let source = try SourceFactory.make(spec, options: options) else {
                throw ValidationError("source '\(text)': the simulator is live; run the daemon to store it")
            }
            let report = try StoreImporter.importEvents(from: source, directory: data + "/store", subjects: subjects)
            let counters = source.counters().filter { $0.value > 0 && ($0.name.contains("error") || $0.name.contains("unknown")) }
            print("\(text): \(report.events) events stored, \(report.sealed.count) partitions sealed"
                  + (counters.isEmpty ? "" : " (" + counters.map { "\($0.name) \($0.value)" }.joined(separator: ", ") + ")"))
            if let summary = (source as? SkipReporting)?.skipSummary {
                FileHandle.standardError.write(Data("tickwire import: \(summary)\n".utf8))
                skipped = true
            }
        }
        // What was kept is stored; exit 1 says some input was not (as decode does under --on-error skip).
        if skipped { throw ExitCode(1) }
    }
}
