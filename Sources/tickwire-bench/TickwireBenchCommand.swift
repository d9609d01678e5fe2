import ArgumentParser
import TickwireBench

/// `tickwire-bench SUITE`: measure a component beside its baseline in the same run and print the result as JSON.
/// A separate executable from `tickwire`, built by the same `swift build -c release`: the trading binary carries
/// none of the suites, their baselines (SQLite, a raw libzmq forwarder) or HdrHistogram.
@main
struct TickwireBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tickwire-bench",
        abstract: "Measure a component beside its baseline in the same run; prints JSON.",
        discussion: "Suites: \(BenchSuites.names.joined(separator: ", ")). Build with -c release for meaningful figures. BENCHMARKS.md says what each measures; Tools/bench_report.py turns the JSON into it.")

    @Argument(help: "The suite: \(BenchSuites.names.joined(separator: ", ")).") var suite: String
    @Option(help: "Events (messages, appends) per measured run.") var events: Int?
    @Option(help: "Repetitions.") var runs = 3
    @Option(help: "Scratch directory for suites that write files.") var dir = "/tmp/tickwire-bench"
    @Option(name: .customLong("param"), help: "Extra KEY=VALUE for a suite (its keys are listed at the top of its source file). Repeatable.") var params: [String] = []

    func validate() throws {
        guard BenchSuites.names.contains(suite) else {
            throw ValidationError("unknown suite '\(suite)'; one of \(BenchSuites.names.joined(separator: ", "))")
        }
        do { _ = try BenchSuites.parseParameters(params, suite: suite) } catch { throw ValidationError("\(error)") }
    }

    func run() throws {
        var o = BenchOptions(runs: runs, directory: dir)
        if let events { o.events = events }
        o.parameters = try BenchSuites.parseParameters(params, suite: suite)
        print(try BenchSuites.json(try BenchSuites.run(suite, options: o)))
    }
}
