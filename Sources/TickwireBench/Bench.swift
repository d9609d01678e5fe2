import Foundation

/// Options every `tickwire-bench` suite understands.
public struct BenchOptions: Sendable {
    /// How many events (or messages, appends) each measured run moves.
    public var events: Int
    /// Repetitions; each figure reports the best and the median.
    public var runs: Int
    /// A scratch directory for suites that write files.
    public var directory: String
    /// Extra `key=value` parameters a suite may read.
    public var parameters: [String: String]
    public init(events: Int = 10_000_000, runs: Int = 3, directory: String = "/tmp/tickwire-bench", parameters: [String: String] = [:]) {
        self.events = events; self.runs = runs; self.directory = directory; self.parameters = parameters
    }
}

/// A suite's result: a Codable struct of its own (`ITCHBench.Result`, `RouterBench.Result`, …), printed as JSON
/// with snake_case keys, sorted. Tools/bench_report.py reads that JSON into BENCHMARKS.md.
public protocol BenchReport: Codable, Sendable {}

/// The suites `tickwire-bench NAME` runs. Each lives in its own file and measures itself beside its baseline.
public enum BenchSuites {
    public static let names = ["ring", "router", "e2e", "itch", "journal", "recovery", "store", "frames", "replicated", "nats", "submit"]

    /// The `--param` keys each suite reads (documented at the top of its file): any other is refused, so a
    /// misspelt key cannot silently leave a default in place.
    public static let parameters: [String: [String]] = [
        "ring": ["latency_samples", "only"],
        "router": ["subscriptions", "hot_subjects"],
        "e2e": ["latency_rate", "latency_count", "only"],
        "itch": ["file", "reset_every"],
        "journal": ["raw_records", "batched_records", "sqlite_records", "segment_bytes", "paced_rate", "paced_records",
                    "raw_nearby_records", "threads", "per_thread", "pipeline_threads", "window", "pipelined_records",
                    "nosync_records", "zmq_clients", "zmq_records", "zmq_batch"],
        "recovery": ["sizes", "only", "slots", "rate"],
        "store": ["n", "symbols", "only"],
        "frames": ["n", "symbols", "store"],
        "replicated": ["window", "clients", "batch", "throughput", "failover", "rate", "paths"],
        "nats": ["latency_rate", "latency_seconds", "send_asap", "fanout", "fanout_messages", "fanout_rate"],
        "submit": ["trades", "batch", "window", "service_clients", "service_batch", "sqlite_records", "before_binary", "only", "latency_rate", "latency_batch", "latency_seconds"],
    ]

    /// Parses `KEY=VALUE` arguments for `suite`.
    /// - Throws: `BenchError.badParameter` naming an argument without `=` or a key the suite does not read.
    public static func parseParameters(_ arguments: [String], suite: String) throws -> [String: String] {
        let known = parameters[suite] ?? []
        var out: [String: String] = [:]
        for a in arguments {
            let kv = a.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard kv.count == 2, !kv[0].isEmpty else { throw BenchError.badParameter("--param wants KEY=VALUE, got '\(a)'") }
            guard known.contains(String(kv[0])) else {
                throw BenchError.badParameter("unknown --param '\(kv[0])' for suite '\(suite)'; it reads \(known.isEmpty ? "none" : known.joined(separator: ", "))")
            }
            out[String(kv[0])] = String(kv[1])
        }
        return out
    }

    public static func run(_ name: String, options: BenchOptions) throws -> any BenchReport {
        switch name {
        case "ring": return try RingBench.run(options)
        case "router": return try RouterBench.run(options)
        case "e2e": return try E2EBench.run(options)
        case "itch": return try ITCHBench.run(options)
        case "journal": return try JournalBench.run(options)
        case "recovery": return try RecoveryBench.run(options)
        case "store": return try StoreBench.run(options)
        case "frames": return try FramesBench.run(options)
        case "replicated": return try ReplicatedBench.run(options)
        case "nats": return try NATSBench.run(options)
        case "submit": return try SubmitBench.run(options)
        default: throw BenchError.unknownSuite(name)
        }
    }

    /// Pretty, key-sorted JSON text of a report; property names become snake_case keys (`p99Ns` → `p99_ns`).
    public static func json(_ report: any BenchReport) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return String(decoding: try encoder.encode(report), as: UTF8.self)
    }
}

public enum BenchError: Error, CustomStringConvertible {
    case unknownSuite(String)
    case failed(String)
    case badParameter(String)
    public var description: String {
        switch self {
        case .unknownSuite(let n): "unknown bench suite '\(n)'; one of \(BenchSuites.names.joined(separator: ", "))"
        case .failed(let why): why
        case .badParameter(let why): why
        }
    }
}
