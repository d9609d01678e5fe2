import CSQLite
import CTickwireSys
import Foundation
import Histogram
import TickwireCore
import TickwireDaemon
import TickwireJournal
import TickwireZMQ

/// `tickwire-bench journal`: acknowledged (durable) appends per second with group commit, beside SQLite (WAL,
/// synchronous=FULL, one transaction per trade) and the device's raw limit (the same 128-byte records with
/// write + fdatasync each, and batched 256 per fdatasync), all in one run on the same file system; plus the
/// page-cache rate with sync off and acknowledgement latency.
///
/// Parameters (`key=value`): `raw_records` (3000), `batched_records` (256000), `sqlite_records` (3000),
/// `threads` (64), `per_thread` (400), `pipeline_threads` (4), `window` (256), `pipelined_records` (400000),
/// `nosync_records` (min(events, 2M)), `zmq_clients` (4), `zmq_records` (100000), `paced_rate` (50000 a
/// second), `paced_records` (100000), `segment_bytes` (4 MiB, the latency runs' segments).
enum JournalBench {
    static let payloadBytes = 64   // + the 64-byte header = 128-byte records, as in the raw baselines

    static func run(_ options: BenchOptions) throws -> Result {
        let p = options.parameters
        func param(_ k: String, _ d: Int) -> Int { p[k].flatMap(Int.init) ?? d }
        let root = options.directory + "/journal-bench-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let runs = max(1, options.runs)
        var n = 0
        func fresh() -> String { n += 1; return root + "/\(n)" }
        func best(_ body: () throws -> Double) rethrows -> (best: Double, median: Double) {
            var xs: [Double] = []
            for _ in 0..<runs { xs.append(try body()) }
            xs.sort()
            return (xs.last!, xs[xs.count / 2])
        }

        // One record per write + fdatasync: the device's per-sync limit.
        let rawSingle = try best { try rawSyncTimes(fresh(), records: param("raw_records", 3000)).rate }
        let rawBatched = try best { try raw(fresh(), records: param("batched_records", 256_000), batch: 256, sync: true) }
        let sqlite = try best { try sqliteRate(fresh(), records: param("sqlite_records", 3000)) }
        // Acknowledgement latency with and without pre-extended segments, taking turns in each round. Segments of
        // 4 MiB, so a run of a few MB prepares about as many zeros as it writes records: the steady state's share
        // of the preparer's disk traffic (one 64 MiB segment prepared during a 3 MB run would overstate it 20×).
        let segmentBytes = Int64(param("segment_bytes", 4 << 20))
        let pacedRate = param("paced_rate", 50_000), pacedRecords = param("paced_records", 100_000)
        // The journal as configured (pre-extended, one commit at a time), with two overlapping commits, and as it
        // was before pre-extension (appending), taking turns in each round.
        // And as configured but with the ack mark written only once (an interval longer than the run): what the
        // marker thread's small fdatasync after commits costs the acknowledgements.
        let variants: [(name: String, preExtend: Bool, syncThreads: Int, markEvery: Int64)] = [
            ("default_pre_extended_1_sync_thread", true, 1, JournalOptions().ackMarkIntervalNanos),
            ("pre_extended_2_sync_threads", true, 2, JournalOptions().ackMarkIntervalNanos),
            ("appending_1_sync_thread", false, 1, JournalOptions().ackMarkIntervalNanos),
            ("default_without_ack_marks", true, 1, Int64.max / 2),
        ]
        func empty() -> Histogram<UInt64> { Histogram<UInt64>(numberOfSignificantValueDigits: .three) }
        var blockingAcks = variants.map { _ in empty() }, blockingSyncs = blockingAcks
        var pacedAcks = blockingAcks, pacedSyncs = blockingAcks
        // The same, counting only the paced runs during which the device probe saw no stall.
        var pacedAcksStallFree = blockingAcks
        var pacedRunsStalled = variants.map { _ in 0 }
        var probeWorstInStalledRuns: Int64 = 0
        let probe = DeviceProbe(path: root + "/device-probe")
        defer { probe.stop() }
        var blockingRates: [Double] = []
        // The device's fsync time drifts over minutes on this shared VM, so the latency rounds take their own
        // raw write + fdatasync samples between the measures they are compared with.
        var rawNearby = empty()
        func sampleRaw() throws { rawNearby.add(try rawSyncTimes(fresh(), records: param("raw_nearby_records", 500)).syncs) }
        for _ in 0..<runs {
            for (i, v) in variants.enumerated() {
                try sampleRaw()
                var options = JournalOptions(segmentBytes: segmentBytes)
                options.ackMarkIntervalNanos = v.markEvery
                options.preExtendSegments = v.preExtend
                options.syncThreads = v.syncThreads
                let rate = try journalBlocking(fresh(), threads: param("threads", 64), perThread: param("per_thread", 400),
                                               options: options, latency: &blockingAcks[i], syncs: &blockingSyncs[i])
                if i == 0 { blockingRates.append(rate) }
                var acks = empty()
                let t0 = tw_monotonic_ns()
                try journalPaced(fresh(), rate: pacedRate, records: pacedRecords, options: options,
                                 latency: &acks, syncs: &pacedSyncs[i])
                pacedAcks[i].add(acks)
                let worst = probe.worstSync(from: t0, to: tw_monotonic_ns())
                if worst >= DeviceProbe.stallNanos {
                    pacedRunsStalled[i] += 1
                    probeWorstInStalledRuns = max(probeWorstInStalledRuns, worst)
                } else {
                    pacedAcksStallFree[i].add(acks)
                }
            }
        }
        try sampleRaw()
        blockingRates.sort()
        let blocking = (best: blockingRates.last!, median: blockingRates[blockingRates.count / 2])
        let pipelined = try best {
            try journalPipelined(fresh(), threads: param("pipeline_threads", 4), window: param("window", 256),
                                 records: param("pipelined_records", 400_000))
        }
        let noSyncRecords = param("nosync_records", min(options.events, 2_000_000))
        let rawNoSync = try best { try raw(fresh(), records: noSyncRecords, batch: 256, sync: false) }
        let noSync = try best { try journalNoSync(fresh(), records: noSyncRecords) }
        let sha = best { hashRate(records: 1_000_000, .sha256) }
        let crc = best { hashRate(records: 1_000_000, .crc32c) }
        let zmq = try best {
            try tradesOverZMQ(fresh(), clients: param("zmq_clients", 4), records: param("zmq_records", 100_000), batch: 1)
        }
        let zmqBatch = param("zmq_batch", 32)
        let zmqBatched = try best {
            try tradesOverZMQ(fresh(), clients: param("zmq_clients", 4), records: param("zmq_records", 100_000), batch: zmqBatch)
        }

        let fsyncMicros = 1e6 / rawSingle.best
        let fsyncP50 = Double(rawNearby.valueAtPercentile(50)) / 1000, fsyncP99 = Double(rawNearby.valueAtPercentile(99)) / 1000
        let prefilled = try rawSyncTimes(fresh(), records: param("raw_records", 3000), prefilled: true).syncs
        let prefilledP50 = Double(prefilled.valueAtPercentile(50)) / 1000, prefilledP99 = Double(prefilled.valueAtPercentile(99)) / 1000
        let ackP50 = Double(blockingAcks[0].valueAtPercentile(50)) / 1000, ackP99 = Double(blockingAcks[0].valueAtPercentile(99)) / 1000
        let pacedP99 = Double(pacedAcks[0].valueAtPercentile(99)) / 1000
        func p99(_ h: Histogram<UInt64>) -> Double { Double(h.valueAtPercentile(99)) / 1000 }
        func micros(_ h: Histogram<UInt64>) -> Micros { Micros(h) }
        let groupBest = max(blocking.best, pipelined.best)
        func fig(_ x: (best: Double, median: Double)) -> Result.BestMedian { .init(best: Int(x.best), median: Int(x.median)) }
        return Result(
            recordBytes: JournalFormat.recordHeaderSize + payloadBytes,
            // The machine is shared: a 1-minute load average well above the 2 cores divides every figure alike.
            loadAverage_1m: (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").first.map(String.init) ?? "?",
            runs: runs,
            zmqBatch: zmqBatch,
            directory: options.directory,
            perSecond: [
                "raw_write_fdatasync_per_record": fig(rawSingle),
                "raw_write_batched_256_per_fdatasync": fig(rawBatched),
                "sqlite_wal_full_txn_per_trade": fig(sqlite),
                "journal_group_commit_blocking_appenders": fig(blocking),
                "journal_group_commit_pipelined_appenders": fig(pipelined),
                "trades_acked_over_zeromq_curve": fig(zmq),
                "trades_acked_over_zeromq_curve_batched": fig(zmqBatched),
                "raw_write_batched_no_sync": fig(rawNoSync),
                "journal_no_sync": fig(noSync),
                "sha256_128B_alone": fig(sha),
                "crc32c_128B_alone": fig(crc),
            ],
            ratios: [
                "journal_group_commit_vs_sqlite": groupBest / sqlite.best,
                "journal_group_commit_vs_raw_batched": groupBest / rawBatched.best,
                "journal_group_commit_vs_raw_per_record": groupBest / rawSingle.best,
                "zeromq_trades_vs_sqlite": zmq.best / sqlite.best,
                "zeromq_batched_trades_vs_sqlite": zmqBatched.best / sqlite.best,
                "zeromq_batched_vs_one_per_message": zmqBatched.best / zmq.best,
                "journal_no_sync_vs_raw_no_sync": noSync.best / rawNoSync.best,
                "blocking_ack_p99_in_mean_fsync_times": ackP99 / fsyncMicros,
                "blocking_ack_p50_vs_raw_fsync_p50": ackP50 / fsyncP50,
                "blocking_ack_p99_vs_raw_fsync_p99": ackP99 / fsyncP99,
                "paced_ack_p99_vs_raw_fsync_p99": pacedP99 / fsyncP99,
                "paced_ack_p99_vs_raw_fsync_p99_stall_free_runs": p99(pacedAcksStallFree[0]) / fsyncP99,
                "paced_ack_p99_before_vs_now": p99(pacedAcks[2]) / pacedP99,
                "blocking_ack_p99_before_vs_now": p99(blockingAcks[2]) / ackP99,
                "raw_fsync_p50_appending_vs_prefilled": fsyncP50 / prefilledP50,
            ],
            ackLatencyUs: Result.AckLatency(
                note: "blocking: \(param("threads", 64)) threads each in appendDurably; paced: the trade service's shape, one thread appending \(pacedRate)/s (the records due each ms), latency from append to the onDurable that covers it; raw: one 128-byte write + fdatasync, sampled between the variants",
                rawWriteFdatasync: micros(rawNearby),
                deviceProbe: .init(
                    note: "a separate thread's 128-byte write + fdatasync to its own file every \(DeviceProbe.intervalMillis) ms through every paced run; a run is stalled when one of them took \(DeviceProbe.stallNanos / 1_000_000) ms or more, a device stall that no journal on this disk can hide",
                    pacedRuns: runs, stalledRunsByVariant: Dictionary(uniqueKeysWithValues: zip(variants.map(\.name), pacedRunsStalled)),
                    worstProbeFdatasyncMsInStalledRuns: Double(probeWorstInStalledRuns) / 1e6),
                rawOverwritePrefilledFdatasyncP50: prefilledP50,
                rawOverwritePrefilledFdatasyncP99: prefilledP99,
                variants: Dictionary(uniqueKeysWithValues: variants.enumerated().map { i, v in
                    (v.name, Result.Variant(blocking: micros(blockingAcks[i]), blockingFdatasync: micros(blockingSyncs[i]),
                                            paced: micros(pacedAcks[i]), pacedFdatasync: micros(pacedSyncs[i]),
                                            // nil: every paced run of this variant met a device stall.
                                            pacedStallFreeRuns: pacedAcksStallFree[i].totalCount == 0 ? nil : micros(pacedAcksStallFree[i])))
                })),
            goals: [
                "vs_sqlite_at_least_20x": groupBest / sqlite.best >= 20,
                "vs_raw_batched_at_least_0.5x": groupBest / rawBatched.best >= 0.5,
                "zeromq_at_least_200k_per_s": max(zmq.best, zmqBatched.best) >= 200_000,
                // The 64-thread stress shape (not the trade service's acknowledgement path, which is the paced one):
                // 64 threads woken per commit on two vCPUs.
                "stress_64_blocking_threads_ack_p99_within_two_mean_fsyncs": ackP99 <= 2 * fsyncMicros,
                "stress_64_blocking_threads_ack_p99_within_two_fsyncs_at_p99": ackP99 <= 2 * fsyncP99,
                "paced_ack_p99_within_two_fsyncs_at_p99": pacedP99 <= 2 * fsyncP99,
                "paced_ack_p99_within_two_fsyncs_at_p99_stall_free_runs":
                    pacedAcksStallFree[0].totalCount > 0 && p99(pacedAcksStallFree[0]) <= 2 * fsyncP99,
                "no_sync_at_least_2M_per_s": noSync.best >= 2_000_000,
            ])
    }

    struct Result: BenchReport {
        var suite = "journal"
        var recordBytes: Int
        var loadAverage_1m: String
        var runs: Int, zmqBatch: Int
        var directory: String
        struct BestMedian: Codable, Sendable { var best: Int, median: Int }
        var perSecond: [String: BestMedian]
        var ratios: [String: Double]
        struct Probe: Codable, Sendable {
            var note: String, pacedRuns: Int, stalledRunsByVariant: [String: Int], worstProbeFdatasyncMsInStalledRuns: Double
        }
        struct Variant: Codable, Sendable {
            var blocking: Micros, blockingFdatasync: Micros, paced: Micros, pacedFdatasync: Micros, pacedStallFreeRuns: Micros?
        }
        struct AckLatency: Codable, Sendable {
            var note: String
            var rawWriteFdatasync: Micros
            var deviceProbe: Probe
            var rawOverwritePrefilledFdatasyncP50: Double, rawOverwritePrefilledFdatasyncP99: Double
            var variants: [String: Variant]
        }
        var ackLatencyUs: AckLatency
        var goals: [String: Bool]
    }

    static func payload(_ i: Int) -> [UInt8] { (0..<payloadBytes).map { UInt8(truncatingIfNeeded: i &+ $0) } }

    static func seconds(_ body: () throws -> Void) rethrows -> Double {
        let t0 = tw_monotonic_ns()
        try body()
        return Double(tw_monotonic_ns() - t0) / 1e9
    }

    /// The chain link (SHA-256) or the CRC32C of one 128-byte record, alone: what bounds the page-cache rate.
    enum Checksum { case sha256, crc32c }

    static func hashRate(records: Int, _ kind: Checksum) -> Double {
        var record = [UInt8](repeating: 1, count: JournalFormat.recordHeaderSize + payloadBytes)
        var sink: UInt64 = 0
        let t = seconds {
            for i in 0..<records {
                record[0] = UInt8(truncatingIfNeeded: i)
                record.withUnsafeBytes { b in
                    switch kind {
                    case .sha256: sink &+= RecordHash(sha256: b).w0
                    case .crc32c: sink &+= UInt64(crc32c(b))
                    }
                }
            }
        }
        if sink == 42 { print("") }   // keep the result alive
        return Double(records) / t
    }

    /// 128-byte records each written and `fdatasync`ed alone: records per second, and each sync's time.
    /// - Parameter prefilled: overwrite a file already extended with zeros and synced, instead of appending, so
    ///   no sync has to record a new file size (how a journal with pre-extended segments would write).
    static func rawSyncTimes(_ path: String, records: Int, prefilled: Bool = false) throws -> (rate: Double, syncs: Histogram<UInt64>) {
        let fd = tw_open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw BenchError.failed("open \(path): errno \(errno)") }
        defer { close(fd) }
        let record = [UInt8](repeating: 0x5a, count: JournalFormat.recordHeaderSize + payloadBytes)
        if prefilled {
            let zeros = [UInt8](repeating: 0, count: records * record.count)
            guard zeros.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == zeros.count, fdatasync(fd) == 0,
                  lseek(fd, 0, SEEK_SET) == 0 else { throw BenchError.failed("prefill: errno \(errno)") }
        }
        var h = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
        let start = tw_monotonic_ns()
        for _ in 0..<records {
            let t0 = tw_monotonic_ns()
            guard record.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == record.count, fdatasync(fd) == 0 else {
                throw BenchError.failed("write + fdatasync: errno \(errno)")
            }
            _ = h.record(UInt64(tw_monotonic_ns() - t0))
        }
        return (Double(records) * 1e9 / Double(tw_monotonic_ns() - start), h)
    }

    /// The device's limit: 128-byte records written `batch` at a time, each batch followed by `fdatasync`.
    static func raw(_ path: String, records: Int, batch: Int, sync: Bool) throws -> Double {
        let fd = tw_open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw BenchError.failed("open \(path): errno \(errno)") }
        defer { close(fd) }
        let record = [UInt8](repeating: 0x5a, count: JournalFormat.recordHeaderSize + payloadBytes)
        let chunk = Array([[UInt8]](repeating: record, count: batch).joined())
        let t = try seconds {
            var done = 0
            while done < records {
                let n = chunk.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                guard n == chunk.count else { throw BenchError.failed("write: errno \(errno)") }
                if sync { guard fdatasync(fd) == 0 else { throw BenchError.failed("fdatasync: errno \(errno)") } }
                done += batch
            }
        }
        return Double(records) / t
    }

    /// SQLite with a write-ahead log and synchronous=FULL, one transaction (autocommit) per trade.
    static func sqliteRate(_ path: String, records: Int) throws -> Double {
        var db: OpaquePointer?
        guard sqlite3_open(path + ".sqlite", &db) == SQLITE_OK, let db else { throw BenchError.failed("sqlite3_open") }
        defer { sqlite3_close(db) }
        for sql in ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                    "CREATE TABLE trades(seq INTEGER PRIMARY KEY, known INTEGER NOT NULL, payload BLOB NOT NULL)"] {
            guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else {
                throw BenchError.failed("sqlite: \(sql): \(String(cString: sqlite3_errmsg(db)))")
            }
        }
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(db, "INSERT INTO trades(seq, known, payload) VALUES (?, ?, ?)", -1, &stmt, nil) == SQLITE_OK else {
            throw BenchError.failed("sqlite prepare")
        }
        defer { sqlite3_finalize(stmt) }
        let body = payload(1)
        return Double(records) / (try seconds {
            for i in 1...records {
                sqlite3_bind_int64(stmt, 1, Int64(i))
                sqlite3_bind_int64(stmt, 2, tw_realtime_ns())
                _ = body.withUnsafeBytes { sqlite3_bind_blob(stmt, 3, $0.baseAddress, Int32($0.count), nil) }
                guard sqlite3_step(stmt) == SQLITE_DONE else { throw BenchError.failed("sqlite step: \(String(cString: sqlite3_errmsg(db)))") }
                sqlite3_reset(stmt)
            }
        })
    }

    /// Writes a fresh journal's first MiB and waits until it has rolled into a pre-extended segment, as a
    /// running daemon's journal is (a no-op when pre-extension is off).
    static func warmUp(_ journal: Journal) throws {
        guard journal.options.preExtendSegments else { return }
        let body = payload(1)
        var last: UInt64 = 0
        for _ in 0..<(1 << 20) / (JournalFormat.recordHeaderSize + payloadBytes) { last = try journal.append(body, eventTime: .zero) }
        try journal.waitDurable(last)
        let deadline = tw_monotonic_ns() + 30_000_000_000
        while !journal.writingPreExtended {
            guard tw_monotonic_ns() < deadline else { throw BenchError.failed("the journal never rolled into a prepared segment") }
            usleep(1000)
            _ = try journal.appendDurably(body, eventTime: .zero)
        }
    }

    /// Many threads, each calling `appendDurably` in a loop (one record in flight per thread).
    static func journalBlocking(_ dir: String, threads: Int, perThread: Int, options: JournalOptions,
                                latency: inout Histogram<UInt64>, syncs: inout Histogram<UInt64>) throws -> Double {
        let syncTimes = JournalBenchBox(Histogram<UInt64>(numberOfSignificantValueDigits: .three))
        let measuring = JournalBenchBox(false)   // the warm-up's syncs are not recorded
        var options = options
        options.onSync = { ns in if measuring.value { syncTimes.update { _ = $0.record(UInt64(max(0, ns))) } } }
        let journal = try Journal(directory: dir, options: options)
        defer { journal.close() }
        try warmUp(journal)
        measuring.update { $0 = true }
        let histograms = JournalBenchBox([Histogram<UInt64>]())
        let body = payload(7)
        let t = seconds {
            runThreads(threads) { _ in
                var h = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
                for _ in 0..<perThread {
                    let t0 = tw_monotonic_ns()
                    _ = try? journal.appendDurably(body, eventTime: .zero)
                    _ = h.record(UInt64(tw_monotonic_ns() - t0))
                }
                histograms.update { $0.append(h) }
            }
        }
        for h in histograms.value { latency.add(h) }
        syncs.add(syncTimes.value)
        return Double(threads * perThread) / t
    }

    /// The trade service's shape: one thread appends at an offered rate (the records due every millisecond, as
    /// request messages bring them) and is told of durability by `onDurable` on the sync thread, which is when
    /// the service replies. Each record's latency is from its append to the `onDurable` that covers it.
    static func journalPaced(_ dir: String, rate: Int, records: Int, options: JournalOptions,
                             latency: inout Histogram<UInt64>, syncs: inout Histogram<UInt64>) throws {
        nonisolated(unsafe) let appended = UnsafeMutablePointer<Int64>.allocate(capacity: records + 1)
        defer { appended.deallocate() }
        appended.initialize(repeating: 0, count: records + 1)
        let state = JournalBenchBox((base: UInt64?.none, reported: UInt64(0), h: Histogram<UInt64>(numberOfSignificantValueDigits: .three),
                                     syncs: Histogram<UInt64>(numberOfSignificantValueDigits: .three)))
        var options = options
        options.onSync = { ns in state.update { if $0.base != nil { _ = $0.syncs.record(UInt64(max(0, ns))) } } }
        options.onDurable = { durable in
            let now = tw_monotonic_ns()
            state.update { st in
                guard let base = st.base, durable > base else { return }
                var s = max(st.reported, base) + 1
                while s <= durable {
                    let i = Int(s - base)
                    if i <= records && appended[i] > 0 { _ = st.h.record(UInt64(max(0, now - appended[i]))) }
                    s += 1
                }
                st.reported = durable
            }
        }
        let journal = try Journal(directory: dir, options: options)
        try warmUp(journal)
        state.update { $0.base = journal.durableSequence; $0.reported = journal.durableSequence }
        let body = payload(5)
        let start = tw_monotonic_ns()
        var done = 0
        while done < records {
            let due = min(records, Int(Double(tw_monotonic_ns() - start) * Double(rate) / 1e9) + 1)
            while done < due {
                done += 1
                appended[done] = tw_monotonic_ns()
                _ = try journal.append(body, eventTime: .zero)
            }
            if done < records { usleep(1000) }
        }
        try journal.waitDurable(state.value.base! + UInt64(records))
        journal.close()
        latency.add(state.value.h)
        syncs.add(state.value.syncs)
    }

    /// A few threads each keeping `window` records in flight: append them, wait for the last to be durable.
    static func journalPipelined(_ dir: String, threads: Int, window: Int, records: Int) throws -> Double {
        let journal = try Journal(directory: dir)
        defer { journal.close() }
        let body = payload(9)
        let per = records / threads
        let t = seconds {
            runThreads(threads) { _ in
                var done = 0
                while done < per {
                    var last: UInt64 = 0
                    for _ in 0..<min(window, per - done) { last = (try? journal.append(body, eventTime: .zero)) ?? last }
                    try? journal.waitDurable(last)
                    done += window
                }
            }
        }
        return Double(per * threads) / t
    }

    /// One thread appending with sync off: the page-cache rate (copy, CRC32C and SHA-256 chain per record).
    static func journalNoSync(_ dir: String, records: Int) throws -> Double {
        let journal = try Journal(directory: dir, options: JournalOptions(sync: .none))
        defer { journal.close() }
        let body = payload(3)
        return Double(records) / (try seconds {
            var last: UInt64 = 0
            try body.withUnsafeBytes { b in
                for _ in 0..<records { last = try journal.append(b, eventTime: .zero) }
            }
            try journal.waitDurable(last)
        })
    }

    /// End to end: clients over ZeroMQ with CURVE, each keeping many trades in flight, to the trade service;
    /// `batch` trades per request message.
    static func tradesOverZMQ(_ dir: String, clients: Int, records: Int, batch: Int) throws -> Double {
        let context = ZMQContext()
        let service = TradeService(config: TradeServiceConfig(endpoint: "tcp://127.0.0.1:*"), dataDirectory: dir, context: context)
        try service.start()
        defer { service.stop() }
        let per = records / clients
        let failures = JournalBenchBox(0)
        let price = Price(e8: 18_725_000_000), qty = Quantity(e8: 10_000_000_000)
        let t = seconds {
            runThreads(clients) { c in
                let ctx = ZMQContext()
                guard let client = try? TradeClient.forDataDirectory(dir, context: ctx, endpoint: service.boundEndpoint) else {
                    failures.update { $0 += 1 }; return
                }
                defer { client.close() }
                let window = 2048
                var sent = 0, acked = 0
                while acked < per {
                    while sent < per && sent - acked < window {
                        let n = min(batch, per - sent)
                        let requests = (sent..<sent + n).map {
                            TradeRequest(desk: "D\(c)", symbol: "AAPL", side: .buy, quantity: qty, price: price, clientOrderID: "c\(c)-\($0)")
                        }
                        try? client.send(batch: requests)
                        sent += n
                    }
                    guard let reply = try? client.receive(timeoutMs: 10_000) else { failures.update { $0 += 1 }; return }
                    if case .reject = reply { failures.update { $0 += 1 } }
                    acked += 1
                }
            }
        }
        if failures.value > 0 { throw BenchError.failed("\(failures.value) trades were not acknowledged over ZeroMQ") }
        return Double(per * clients) / t
    }
}

/// A second writer on the same device: a 128-byte write + fdatasync to its own file every few milliseconds, on
/// its own thread, for as long as the bench runs. When one of its syncs takes tens of milliseconds while a
/// journal run is stalled too, the device stalled, not the journal (on this VM such stalls come every 20-30 s
/// whether or not anything else writes).
final class DeviceProbe: @unchecked Sendable {
    static let intervalMillis = 10
    /// A stall: about 17x this disk's raw fsync p99 (under 0.3 ms); 10 ms at 50,000 acks a second is already
    /// half a percent of a run held up.
    static let stallNanos: Int64 = 5_000_000
    private let samples = JournalBenchBox<[(start: Int64, nanos: Int64)]>([])
    private let stopping = JournalBenchBox(false)
    private let done = DispatchSemaphore(value: 0)

    init(path: String) {
        Thread.detachNewThread { [self] in
            let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
            var block = [UInt8](repeating: 0, count: 128)
            while fd >= 0 && !stopping.value {
                block[0] &+= 1
                let t0 = tw_monotonic_ns()
                _ = block.withUnsafeBytes { pwrite(fd, $0.baseAddress, 128, 0) }
                _ = fdatasync(fd)
                let t1 = tw_monotonic_ns()
                samples.update { $0.append((t0, t1 - t0)) }
                usleep(useconds_t(Self.intervalMillis * 1000))
            }
            if fd >= 0 { close(fd) }
            done.signal()
        }
    }

    /// Every probe sync's duration so far (ns).
    var syncNanos: [Int64] { samples.value.map(\.nanos) }

    /// The longest probe sync that overlapped `from...to` (monotonic ns).
    func worstSync(from: Int64, to: Int64) -> Int64 {
        samples.value.filter { $0.start <= to && $0.start + $0.nanos >= from }.map(\.nanos).max() ?? 0
    }

    func stop() {
        guard !stopping.value else { return }
        stopping.update { $0 = true }
        done.wait()
    }
}

/// Runs `body(i)` on `count` threads at once (concurrentPerform would cap them at the core count).
private func runThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for i in 0..<count {
        group.enter()
        Thread.detachNewThread { body(i); group.leave() }
    }
    group.wait()
}

/// A value behind a lock, for collecting results from benchmark threads (off the measured path).
private final class JournalBenchBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var v: T
    init(_ v: T) { self.v = v }
    func update(_ body: (inout T) -> Void) { lock.lock(); body(&v); lock.unlock() }
    var value: T { lock.lock(); defer { lock.unlock() }; return v }
}
