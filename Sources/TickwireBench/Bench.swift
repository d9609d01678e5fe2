import Foundation

/// Options every `tickwire bench` suite understands.
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

/// A suite's result: a JSON object (`[String: Any]` of numbers, strings, arrays and nested objects).
public typealias BenchReport = [String: Any]

/// The suites `tickwire bench NAME` runs. Each lives in its own file and measures itself beside its baseline.
public enum BenchSuites {
    public static let names = ["ring", "router", "e2e", "itch", "journal", "recovery", "store", "frames", "replicated", "nats"]

    public static func run(_ name: String, options: BenchOptions) throws -> BenchReport {
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
        default: throw BenchError.unknownSuite(name)
        }
    }

    /// Pretty, key-sorted JSON text of a report.
    public static func json(_ report: BenchReport) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: report, options: [.prettyPrinted, .sortedKeys]) else {
            return "{}"
        }
        return String(decoding: data, as: UTF8.self)
    }
}

public enum BenchError: Error, CustomStringConvertible {
    case unknownSuite(String)
    case notImplemented(String)
    case failed(String)
    public var description: String {
        switch self {
        case .unknownSuite(let n): "unknown bench suite '\(n)'; one of \(BenchSuites.names.joined(separator: ", "))"
        case .notImplemented(let n): "bench suite '\(n)' is not built yet"
        case .failed(let why): why
        }
    }
}
