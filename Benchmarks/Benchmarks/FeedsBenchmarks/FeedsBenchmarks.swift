import Benchmark
import Foundation
import TickwireCore
import TickwireBenchSupport
import TickwireFeeds

// ITCH 5.0 decode and decode+books over the real 09:30 slice repeated 1,000 times (1M messages), beside the
// copying baseline and the byte-sum memory ceiling over the same buffer. One scaled iteration = one message.
let slicePath = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Tests/Fixtures/nasdaq_itch50_20191230_0930_1000msgs.itch50").path

let benchmarks: @Sendable () -> Void = {
    let slice = Array(FileManager.default.contents(atPath: slicePath) ?? Data())
    let input = ITCHBenchSupport.repeated(slice, copies: 1000)
    let messages = 1_000_000
    let config = Benchmark.Configuration(metrics: [.throughput, .wallClock, .mallocCountTotal], scalingFactor: .one,
                                         maxDuration: .seconds(3), maxIterations: 20)

    Benchmark("Feeds.itch.ceiling.byteSum", configuration: config) { benchmark in
        input.withUnsafeBytes { buf in
            for _ in benchmark.scaledIterations { blackHole(ITCHBenchSupport.byteSum(buf)) }
        }
    }
    Benchmark("Feeds.itch.baseline.copyingDecoder", configuration: config) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(ITCHBenchSupport.decodeCopying(input).checksum) }
    }
    Benchmark("Feeds.itch.decode.inPlace", configuration: config) { benchmark in
        input.withUnsafeBytes { buf in
            for _ in benchmark.scaledIterations {
                let r = ITCHBenchSupport.decodeInPlace(buf)
                precondition(r.messages == messages)
                blackHole(r.checksum)
            }
        }
    }
    Benchmark("Feeds.itch.decode.typedBodies", configuration: config) { benchmark in
        input.withUnsafeBytes { buf in
            for _ in benchmark.scaledIterations { blackHole(ITCHBenchSupport.decodeBodies(buf).checksum) }
        }
    }
    Benchmark("Feeds.itch.decodeAndBooks", configuration: config) { benchmark in
        let date = try! TradingDate(parsing: "2019-12-30")
        let normalizer = ITCHNormalizer(sink: CountingSink(), clock: EasternClock(date: date), expectedLiveOrders: messages)
        input.withUnsafeBytes { buf in
            for _ in benchmark.scaledIterations {
                normalizer.books.reset()
                benchmark.startMeasurement()
                blackHole(ITCHBenchSupport.decodeAndBuildBooks(buf, normalizer: normalizer, resetEvery: messages))
                benchmark.stopMeasurement()
            }
        }
    }
}
