import CTickwireSys
import Foundation
import TickwireBenchSupport
import TickwireFeeds

/// `tickwire-bench itch`: ITCH 5.0 decode and decode+books, messages/s on one core, beside a copying decoder
/// and the memory-bandwidth ceiling measured over the same buffer in the same run.
///
/// The input is the real 1000-message 09:30 slice repeated (order references offset per copy) to
/// `options.events` messages. Parameters: `file=PATH` (default: the slice in Tests/Fixtures),
/// `reset_every=N` messages between book resets (default 1,000,000).
enum ITCHBench {
    static func run(_ options: BenchOptions) throws -> Result {
        let defaultSlice = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Tests/Fixtures/nasdaq_itch50_20191230_0930_1000msgs.itch50").path
        let path = options.parameters["file"] ?? defaultSlice
        guard let data = FileManager.default.contents(atPath: path) else { throw BenchError.failed("cannot read ITCH slice '\(path)'") }
        let slice = Array(data)
        let copies = max(1, options.events / 1000)
        let input = ITCHBenchSupport.repeated(slice, copies: copies)
        let resetEvery = Int(options.parameters["reset_every"] ?? "") ?? 1_000_000
        let date = try TradingDate(parsing: "2019-12-30")

        func best(_ body: () -> Int) -> (best: Double, median: Double) {
            var rates: [Double] = []
            for _ in 0..<max(1, options.runs) {
                let t0 = tw_monotonic_ns()
                let n = body()
                let dt = Double(tw_monotonic_ns() - t0) / 1e9
                rates.append(Double(n) / dt)
            }
            rates.sort()
            return (rates.last!, rates[rates.count / 2])
        }
        var sink: UInt64 = 0
        var messages = 0
        let (ceiling, decode, bodies, books) = input.withUnsafeBytes { buf in
            let ceiling = best { sink &+= ITCHBenchSupport.byteSum(buf); return input.count / 8 }   // words/s, converted below
            let decode = best { let r = ITCHBenchSupport.decodeInPlace(buf); sink &+= r.checksum; messages = r.messages; return r.messages }
            let bodies = best { let r = ITCHBenchSupport.decodeBodies(buf); sink &+= r.checksum; return r.messages }
            let normalizer = ITCHNormalizer(sink: CountingSink(), clock: EasternClock(date: date), expectedLiveOrders: resetEvery)
            let books = best {
                normalizer.books.reset()
                return ITCHBenchSupport.decodeAndBuildBooks(buf, normalizer: normalizer, resetEvery: resetEvery)
            }
            return (ceiling, decode, bodies, books)
        }
        let copying = best { let r = ITCHBenchSupport.decodeCopying(input); sink &+= r.checksum; return r.messages }
        let bytesPerMessage = Double(input.count) / Double(messages)
        // The ceiling in messages/s: the byte rate of the summing loop divided by the mean framed message size.
        let ceilingMessages = (best: ceiling.best * 8 / bytesPerMessage, median: ceiling.median * 8 / bytesPerMessage)
        func fig(_ r: (best: Double, median: Double)) -> Result.Figure {
            Result.Figure(msgsPerSBest: Int(r.best), msgsPerSMedian: Int(r.median),
                          vsCopyingBaseline: (r.best / copying.best * 100).rounded() / 100,
                          fractionOfMemoryCeiling: (r.best / ceilingMessages.best * 1000).rounded() / 1000)
        }
        return Result(
            input: .init(messages: messages, bytes: input.count, bytesPerMessage: (bytesPerMessage * 10).rounded() / 10,
                         source: "nasdaq_itch50_20191230_0930_1000msgs repeated \(copies)x", booksResetEvery: resetEvery),
            runs: options.runs,
            baselineCopyingDecoder: .init(msgsPerSBest: Int(copying.best), msgsPerSMedian: Int(copying.median)),
            ceilingByteSum: .init(msgsPerSBest: Int(ceilingMessages.best), gbPerSBest: (ceiling.best * 8 / 1e7).rounded() / 100),
            decodeInPlace: fig(decode), decodeTypedBodies: fig(bodies), decodeAndBooks: fig(books),
            goals: .init(decodeMsgsPerS: 50_000_000, booksMsgsPerS: 10_000_000),
            checksum: sink & 0xFFFF)
    }

    struct Result: BenchReport {
        var suite = "itch"
        struct Input: Codable, Sendable { var messages: Int, bytes: Int, bytesPerMessage: Double, source: String, booksResetEvery: Int }
        var input: Input
        var runs: Int
        struct Baseline: Codable, Sendable { var msgsPerSBest: Int, msgsPerSMedian: Int }
        var baselineCopyingDecoder: Baseline
        struct Ceiling: Codable, Sendable { var msgsPerSBest: Int, gbPerSBest: Double }
        var ceilingByteSum: Ceiling
        struct Figure: Codable, Sendable { var msgsPerSBest: Int, msgsPerSMedian: Int, vsCopyingBaseline: Double, fractionOfMemoryCeiling: Double }
        var decodeInPlace: Figure, decodeTypedBodies: Figure, decodeAndBooks: Figure
        struct Goals: Codable, Sendable { var decodeMsgsPerS: Int, booksMsgsPerS: Int }
        var goals: Goals
        var checksum: UInt64
    }
}
