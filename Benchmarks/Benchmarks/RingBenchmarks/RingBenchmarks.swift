import Benchmark
import TickwireCore

// Core codec benchmark until the ring lands: encoding one event into a wire payload, no allocation.
let benchmarks: @Sendable () -> Void = {
    Benchmark("Core.wire.encode", configuration: .init(metrics: [.throughput, .mallocCountTotal], scalingFactor: .mega)) { benchmark in
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: WireCodec.payloadSize, alignment: 8)
        defer { buffer.deallocate() }
        var e = Event.quote(1, bid: Price(e8: 100), bidSize: Quantity(e8: 5), ask: Price(e8: 101), askSize: Quantity(e8: 7),
                            eventTime: Nanos(1), knownTime: Nanos(2))
        for i in benchmark.scaledIterations {
            e.seq = UInt64(i)
            WireCodec.encode(e, subjectSeq: UInt64(i), into: buffer)
            blackHole(buffer.load(fromByteOffset: 8, as: UInt64.self))
        }
    }
}
