// swift-tools-version:6.1
import PackageDescription

// tickwire-bench's innermost loops (the suites' baselines, and the ring's inlined publish and poll) start on a
// 64-byte boundary, so a ratio does not move with where the linker happened to put the floor's loop (10% between
// two builds of the same source, BENCH-HISTORY R8, R9). An x86 backend option: other machines build without it.
#if arch(x86_64)
let benchLoopAlignment: [SwiftSetting] = [.unsafeFlags(["-Xllvm", "-x86-experimental-pref-innermost-loop-alignment=6"])]
#else
let benchLoopAlignment: [SwiftSetting] = []
#endif

// One module per concern; the folder tree under Sources/ is the data flow:
// feeds in -> ring -> (ZeroMQ out, client, journal, store) -> replay. See docs/ARCHITECTURE.md.
let package = Package(
    name: "tickwire",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tickwire", targets: ["tickwire"]),
        // The benchmark suites beside their baselines: a separate binary on the same build, so the trading
        // executable links none of SQLite, HdrHistogram or the suites' scaffolding.
        .executable(name: "tickwire-bench", targets: ["tickwire-bench"]),
        .library(name: "TickwireCore", targets: ["TickwireCore"]),
        .library(name: "TickwireZMQ", targets: ["TickwireZMQ"]),
        .library(name: "TickwireRing", targets: ["TickwireRing"]),
        .library(name: "TickwireFeeds", targets: ["TickwireFeeds"]),
        .library(name: "TickwireJournal", targets: ["TickwireJournal"]),
        .library(name: "TickwireStore", targets: ["TickwireStore"]),
        .library(name: "TickwireClient", targets: ["TickwireClient"]),
        .library(name: "TickwireDaemon", targets: ["TickwireDaemon"]),
        .library(name: "TickwireAlerts", targets: ["TickwireAlerts"]),
        .library(name: "TickwireRisk", targets: ["TickwireRisk"]),
        .library(name: "TickwireNATS", targets: ["TickwireNATS"]),
        .library(name: "TickwireTradeClient", targets: ["TickwireTradeClient"]),
        // Benchmark scaffolding (synthetic inputs, counting sinks), a product only so that the Benchmarks/
        // package can use it; no product library or the tickwire executable depends on it.
        .library(name: "TickwireBenchSupport", targets: ["TickwireBenchSupport"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // The metrics/stats HTTP endpoint (concurrent, with timeouts and limits). Default traits minus
        // ConfigurationSupport: we configure it in code, and swift-configuration would only add build time.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: ["FullFoundation"]),
        // Already in the graph through Hummingbird; named here because the metrics server starts and stops it itself.
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        // The live monitor page's WebSocket (`/ws` beside `/metrics`), on the same Hummingbird server.
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
    ],
    targets: [
        // C libraries, each behind a thin system-library or shim target.
        .systemLibrary(name: "CZeroMQ", path: "Sources/CZeroMQ"),
        // libnats (Debian libnats-dev): the floor-wide bus and the replicated trade log, at the edge only.
        .systemLibrary(name: "CNATS", path: "Sources/CNATS"),
        .target(name: "CTickwireSys", path: "Sources/CTickwireSys"),
        // SQLite: the journal bench's baseline (WAL, synchronous=FULL); linked into TickwireBench only.
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite"),
        // xxHash (Debian libxxhash-dev): XXH3-128 of an imported file's bytes, the import's identity.
        .systemLibrary(name: "CXXHash", path: "Sources/CXXHash"),

        // The core model: subjects, fixed-point numbers, times, events, the wire codec. Imports nothing of ours.
        .target(name: "TickwireCore"),
        .target(name: "TickwireZMQ", dependencies: ["CZeroMQ"]),
        // NATS and JetStream through libnats: connections, subscriptions, streams. Core, Ring, Feeds, Journal and
        // Store know nothing of it.
        .target(name: "TickwireNATS", dependencies: ["CNATS"]),
        .target(name: "TickwireRing", dependencies: [
            "TickwireCore", "CTickwireSys",
            .product(name: "DequeModule", package: "swift-collections"),
        ]),
        .target(name: "TickwireFeeds", dependencies: ["TickwireCore", "CTickwireSys"]),
        .target(name: "TickwireJournal", dependencies: [
            "TickwireCore", "CTickwireSys",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .target(name: "TickwireStore", dependencies: ["TickwireCore", "CTickwireSys", "CXXHash", .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "TickwireClient", dependencies: ["TickwireCore", "TickwireZMQ", "TickwireNATS"]),
        // A trader's side of trade submission: the wire model, CURVE keys, the client and its retrying
        // submitter. `tickwire trade` needs only this, not the daemon.
        .target(name: "TickwireTradeClient", dependencies: ["TickwireCore", "TickwireZMQ", "TickwireJournal"]),
        // Complex-event rules over the live stream, and pre-trade risk limits marked to market data.
        .target(name: "TickwireAlerts", dependencies: ["TickwireCore"]),
        .target(name: "TickwireRisk", dependencies: ["TickwireCore"]),
        .target(name: "TickwireDaemon", dependencies: [
            "TickwireCore", "TickwireZMQ", "TickwireRing", "TickwireFeeds", "TickwireJournal",
            "TickwireStore", "TickwireClient", "TickwireAlerts", "TickwireRisk", "TickwireNATS", "TickwireTradeClient",
            "CTickwireSys",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "TOMLKit", package: "TOMLKit"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
        ]),
        // What the benchmarks share with Benchmarks/: an ITCH input built from a real slice and its loops, a
        // counting sink, the deterministic synthetic market (also generated by Tools/asof_peers.py).
        .target(name: "TickwireBenchSupport", dependencies: ["TickwireCore", "TickwireFeeds"]),
        // The suites of `tickwire-bench …`: measurements side by side with their baselines, typed results
        // printed as JSON.
        .target(name: "TickwireBench", dependencies: [
            "TickwireCore", "TickwireZMQ", "TickwireRing", "TickwireFeeds", "TickwireJournal",
            "TickwireStore", "TickwireDaemon", "TickwireTradeClient", "TickwireNATS", "TickwireTestSupport",
            "TickwireBenchSupport", "CSQLite", "CTickwireSys",
            .product(name: "Histogram", package: "hdrhistogram-swift"),
            .product(name: "DequeModule", package: "swift-collections"),
            .product(name: "Logging", package: "swift-log"),
        ],
        swiftSettings: benchLoopAlignment),
        .executableTarget(
            name: "tickwire",
            dependencies: [
                "TickwireDaemon", "TickwireClient", "TickwireTradeClient", "TickwireFeeds", "TickwireCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // jemalloc is the daemon's allocator; linked into the executable only, never a library.
            linkerSettings: [.linkedLibrary("jemalloc")]
        ),
        .executableTarget(
            name: "tickwire-bench",
            dependencies: [
                "TickwireBench",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            // The same allocator as `tickwire`, so the suites measure the components as the daemon runs them.
            linkerSettings: [.linkedLibrary("jemalloc")]
        ),

        // Child processes with bounded waits, free ports, temporary directories: for the tests only.
        .target(name: "TickwireTestSupport", dependencies: ["CTickwireSys", "TickwireFeeds"]),
        .testTarget(name: "TickwireCoreTests", dependencies: ["TickwireCore"]),
        .testTarget(name: "TickwireZMQTests", dependencies: ["TickwireZMQ"]),
        .testTarget(name: "TickwireNATSTests", dependencies: ["TickwireNATS", "TickwireTestSupport"]),
        .testTarget(name: "TickwireRingTests", dependencies: ["TickwireRing", "TickwireCore", "TickwireTestSupport"]),
        .testTarget(name: "TickwireFeedsTests", dependencies: ["TickwireFeeds", "TickwireCore", "TickwireTestSupport"]),
        .testTarget(name: "TickwireJournalTests", dependencies: ["TickwireJournal", "TickwireCore"]),
        .testTarget(name: "TickwireStoreTests", dependencies: ["TickwireStore", "TickwireCore", "TickwireTestSupport"]),
        .testTarget(name: "TickwireAlertsTests", dependencies: ["TickwireAlerts", "TickwireCore"]),
        .testTarget(name: "TickwireRiskTests", dependencies: ["TickwireRisk", "TickwireCore"]),
        .testTarget(name: "TickwireTradeClientTests", dependencies: ["TickwireTradeClient", "TickwireCore"]),
        .testTarget(name: "TickwireDaemonTests", dependencies: [
            "TickwireDaemon", "TickwireClient", "TickwireCore", "TickwireZMQ", "TickwireTestSupport", "TickwireNATS",
            "TickwireTradeClient",
        ]),
    ]
)
