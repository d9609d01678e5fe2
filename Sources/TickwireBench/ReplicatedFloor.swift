import Foundation
import Histogram
import TickwireCore
import TickwireDaemon
import TickwireNATS
import TickwireTestSupport

extension ReplicatedBench {
    /// The machine's floor for the pair's shape, with none of Tickwire's code: the same replicated messages
    /// published asynchronously (`window` in flight until each is fully acknowledged), delivered by two ordered
    /// consumers (two replicas), each appending every message to its own file and `fdatasync`-ing in groups;
    /// message i counts as acknowledged once the cluster confirmed it and replica i % 2 (its "taking daemon") has
    /// synced it. What the pair adds beyond this is CURVE, ZeroMQ, the decisions, the hash chain and the index.
    static func rawPipeline(_ cluster: NATSCluster, stream: String, directory: String, trades: Int, window: Int) throws -> Result {
        final class Replica: @unchecked Sendable {
            let fd: Int32
            /// Received and not yet written; the highest sequence synced; acks waiting for a sync (sequence, index).
            let state = BenchBox((buffer: [UInt8](), last: UInt64(0), durable: UInt64(0), waiting: [(UInt64, Int)](), stop: false))
            init(path: String) { fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644) }
            deinit { close(fd) }
        }
        let replicas = [Replica(path: directory + "/floor-0.log"), Replica(path: directory + "/floor-1.log")]
        let stamps = Stamps(trades)
        let latency = BenchBox(Histogram<UInt64>(numberOfSignificantValueDigits: .three))
        let done = DispatchSemaphore(value: 0), room = DispatchSemaphore(value: window)
        let completed = BenchBox(0)
        @Sendable func complete(_ i: Int) {
            let now = benchNow()
            latency.update { _ = $0.record(UInt64(max(0, now - stamps.times[i]))) }
            room.signal()
            completed.update { $0 += 1; if $0 == trades { done.signal() } }
        }
        // Each replica's writer: take what arrived, write it, sync it, then answer what waited for it.
        let writers = replicas.map { r in
            Thread {
                while true {
                    var (bytes, last, stop) = ([UInt8](), UInt64(0), false)
                    r.state.update { s in swap(&bytes, &s.buffer); last = s.last; stop = s.stop }
                    if stop { return }
                    if bytes.isEmpty { usleep(50); continue }
                    _ = bytes.withUnsafeBytes { write(r.fd, $0.baseAddress, $0.count) }
                    fdatasync(r.fd)
                    var ready: [Int] = []
                    r.state.update { s in
                        s.durable = last
                        ready = s.waiting.filter { $0.0 <= last }.map(\.1)
                        s.waiting.removeAll { $0.0 <= last }
                    }
                    ready.forEach(complete)
                }
            }
        }
        writers.forEach { $0.start() }
        defer { for r in replicas { r.state.update { $0.stop = true } } }

        let raw = try RawStream(cluster, stream: stream, trades: trades, window: window, origin: "floor") { i, result in
            guard case .success(let ack) = result else { return }
            let r = replicas[i % 2]
            var synced = false
            r.state.update { s in if s.durable >= ack.sequence { synced = true } else { s.waiting.append((ack.sequence, i)) } }
            if synced { complete(i) }
        }
        let subscriptions = try replicas.map { r in
            try raw.js.subscribeOrdered(stream: stream, subject: raw.subject, startSequence: 1) { m in
                guard let seq = m.streamPosition?.sequence else { return }
                let bytes = m.bytes
                r.state.update { s in s.buffer += bytes; s.last = seq }
            }
        }
        defer { subscriptions.forEach { $0.unsubscribe() } }
        let (t0, cpu0) = (benchNow(), cpuNanos())
        for i in 0..<trades {
            room.wait()
            stamps.times[i] = benchNow()
            raw.publish(i)
        }
        guard done.wait(timeout: .now() + 120) == .success else {
            throw BenchError.failed("raw pipeline: \(completed.get) of \(trades) acknowledged")
        }
        let t = Double(benchNow() - t0) / 1e9
        return Result(rate: Double(trades) / t, latency: latency.get, trades: trades, cpuNanos: cpuNanos() - cpu0)
    }
}
