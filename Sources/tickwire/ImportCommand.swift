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
        discussion: """
            Stop any daemon on the same data directory first: the store takes one writer at a time. Each source is \
            one transaction: it is stored whole or, when it fails or is interrupted, not at all. A file already \
            imported the same way (the same bytes, kind and --date) is not stored again.
            """)

    @Option(name: .customLong("source"), help: "itch:PATH, tardis-trades:PATH, tardis-quotes:PATH or lobster:PATH. Repeatable.")
    var sources: [String]
    @Option(help: "The trading date of ITCH or LOBSTER timestamps (default: from the file name).") var date: String?
    @Flag(help: "Skip and count bad frames and rows instead of stopping at the first.") var skipErrors = false
    @Option(help: "The data directory.") var data: String = "./tickwire-data"

    func run() throws {
        guard !sources.isEmpty else { throw ValidationError("give at least one --source") }
        var options = FeedOptions(errorPolicy: skipErrors ? .skip : .stop)
        if let date {
            do { options.date = try TradingDate(parsing: date) } catch {
                throw ValidationError("--date '\(date)' is not a calendar date in the form YYYY-MM-DD (such as 2019-12-30)")
            }
        }
        let subjects = SubjectTable()
        var skipped = false
        let forms = "itch:PATH, tardis-trades:PATH, tardis-quotes:PATH or lobster:PATH"
        for text in sources {
            let spec: SourceSpec
            do { spec = try SourceSpec(parsing: text) } catch {
                throw ValidationError("source '\(text)' is not one import takes: give \(forms)")
            }
            let kind: String, path: String
            switch spec {
            case .itch(let p): (kind, path) = ("itch", p)
            case .tardisTrades(let p): (kind, path) = ("tardis-trades", p)
            case .tardisQuotes(let p): (kind, path) = ("tardis-quotes", p)
            case .lobster(let p): (kind, path) = ("lobster", p)
            case .sim, .moldUDP64:
                throw ValidationError("source '\(text)' is a live feed, which import does not take (run the daemon to store it); give \(forms)")
            }
            guard let source = try SourceFactory.make(spec, options: options) else {
                throw ValidationError("source '\(text)' is a live feed; give \(forms)")
            }
            // Only a regular file has an identity; anything else is refused by the source with its reason (a FIFO
            // must not be opened here: that would wait for a writer).
            let regular = (try? FileManager.default.attributesOfItem(atPath: path)[.type] as? FileAttributeType) == .typeRegular
            let identity = regular ? try StoreImporter.Identity(kind: kind + (date.map { " --date \($0)" } ?? ""), path: path) : nil
            let report: StoreImporter.Report
            do {
                report = try StoreImporter.importEvents(from: source, directory: data + "/store", subjects: subjects,
                                                        identity: identity)
            } catch {
                // The import is one transaction: say that nothing of this source is in the store.
                FileHandle.standardError.write(Data("tickwire import: \(text): \(error)\ntickwire import: nothing of '\(text)' was stored\n".utf8))
                throw ExitCode(1)
            }
            if let before = report.alreadyImported {
                print("\(text): already imported, nothing stored (\(before.trimmingCharacters(in: .whitespacesAndNewlines)))")
                continue
            }
            let counters = source.counters().filter { $0.value > 0 && ($0.name.contains("error") || $0.name.contains("unknown")) }
            print("\(text): \(report.events) events stored in \(report.sealed.count) partition\(report.sealed.count == 1 ? "" : "s")"
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
