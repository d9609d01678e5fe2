// swift-tools-version:6.1
import PackageDescription

// Benchmarks live in their own package so `swift test` never builds the harness.
// Run: cd Benchmarks && swift package benchmark            (all)
//      cd Benchmarks && swift package benchmark --target RingBenchmarks
// The CI gate (Tools/alloc_gate.sh, a step of Tools/test.sh): the allocation counts of the per-event paths
// against the committed thresholds in Thresholds/.
let package = Package(
    name: "tickwire-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        // The name pins the identity, whatever the clone's directory is called.
        .package(name: "tickwire", path: ".."),
        .package(url: "https://github.com/ordo-one/package-benchmark", from: "1.38.0", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
    ],
    targets: [
        .executableTarget(
            name: "CoreBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "package-benchmark"),
                .product(name: "TickwireCore", package: "tickwire"),
            ],
            path: "Benchmarks/CoreBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
        .executableTarget(
            name: "RingBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "package-benchmark"),
                .product(name: "TickwireRing", package: "tickwire"),
                .product(name: "TickwireCore", package: "tickwire"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            path: "Benchmarks/RingBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
        .executableTarget(
            name: "FeedsBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "package-benchmark"),
                .product(name: "TickwireFeeds", package: "tickwire"),
                .product(name: "TickwireBenchSupport", package: "tickwire"),
                .product(name: "TickwireCore", package: "tickwire"),
            ],
            path: "Benchmarks/FeedsBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
        .executableTarget(
            name: "JournalBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "package-benchmark"),
                .product(name: "TickwireJournal", package: "tickwire"),
                .product(name: "TickwireCore", package: "tickwire"),
            ],
            path: "Benchmarks/JournalBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
        .executableTarget(
            name: "StoreBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "package-benchmark"),
                .product(name: "TickwireStore", package: "tickwire"),
                .product(name: "TickwireBenchSupport", package: "tickwire"),
                .product(name: "TickwireCore", package: "tickwire"),
            ],
            path: "Benchmarks/StoreBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
        .executableTarget(
            name: "RiskBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "package-benchmark"),
                .product(name: "TickwireAlerts", package: "tickwire"),
                .product(name: "TickwireRisk", package: "tickwire"),
                .product(name: "TickwireCore", package: "tickwire"),
            ],
            path: "Benchmarks/RiskBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
    ]
)
