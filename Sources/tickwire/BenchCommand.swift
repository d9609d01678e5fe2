import ArgumentParser
import TickwireBench

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure a component beside its baseline in the same run; prints JSON.",
        discussion: "Suites: \(BenchSuites.names.joined(separator: ", ")). Build with -c release for meaningful figures.")

    @Argument(help: "The suite: \(BenchSuites.names.joined(separator: ", ")).") var suite: String
    @Option(help: "Events (messages, appends) per measured run.") var events: Int?
    @Option(help: "Repetitions.") var runs = 3
    @Option(help: "Scratch directory for suites that write files.") var dir = "/tmp/tickwire-bench"
    @Option(name: .customLong("param"), help: "Extra KEY=VALUE for a suite. Repeatable.") var params: [String] = []

    func run() throws {
        guard BenchSuites.names.contains(suite) else { throw ValidationError("unknown suite '\(suite)'; one of \(BenchSuites.names.joined(separator: ", "))") }
        var o = BenchOptions(runs: runs, directory: dir)
        if let events { o.events = events }
        for p in params {
            let kv = p.split(separator: "=", maxSplits: 1)
            guard kv.count == 2 else { throw ValidationError("--param wants KEY=VALUE, got '\(p)'") }
            o.parameters[String(kv[0])] = String(kv[1])
        }
        print(BenchSuites.json(try BenchSuites.run(suite, options: o)))
    }
}
