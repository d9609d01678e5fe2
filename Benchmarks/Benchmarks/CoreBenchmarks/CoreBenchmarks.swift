import Benchmark
import TickwireCore

// The wire codec on the publish path: encoding an event into the 72-byte payload in place (what the ZeroMQ
// publisher does per event) and decoding it from a buffer (what a subscriber does), with the allocation count
// per run (the CI gate: zero mallocs per event). The `[UInt8]` forms allocate by design and are not gated.
//
// Run: cd Benchmarks && swift package benchmark --target CoreBenchmarks

let benchmarks: @Sendable () -> Void = {
    let config = Benchmark.Configuration(metrics: [.throughput, .wallClock, .mallocCountTotal], scalingFactor: .mega,
                                         maxDuration: .seconds(3))
    var events: [Event] = []
    for n in 0..<256 {
        let v = Int64(n)
        events.append(Event(subjectID: SubjectID(n), kind: .quote, eventTime: Nanos(v), knownTime: Nanos(v + 1),
                            a: v, b: v * 3, c: v * 5, d: v * 7))
    }

    Benchmark("Codec.encode.inPlace", configuration: config) { benchmark in
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: WireCodec.payloadSize, alignment: 8)
        defer { buffer.deallocate() }
        var sum: UInt8 = 0
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            WireCodec.encode(events[i & 255], subjectSeq: UInt64(i), into: buffer)
            sum &+= buffer.load(fromByteOffset: 8, as: UInt8.self)
        }
        benchmark.stopMeasurement()
        blackHole(sum)
    }

    Benchmark("Codec.decode.inPlace", configuration: config) { benchmark in
        let encoded = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 * WireCodec.payloadSize, alignment: 8)
        defer { encoded.deallocate() }
        for (k, e) in events.enumerated() {
            WireCodec.encode(e, subjectSeq: UInt64(k), into: encoded.baseAddress! + k * WireCodec.payloadSize)
        }
        var sum: Int64 = 0
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            let at = (i & 255) * WireCodec.payloadSize
            let decoded = try WireCodec.decode(UnsafeRawBufferPointer(rebasing: encoded[at..<(at + WireCodec.payloadSize)]))
            sum &+= decoded.event.a
        }
        benchmark.stopMeasurement()
        blackHole(sum)
    }
}
