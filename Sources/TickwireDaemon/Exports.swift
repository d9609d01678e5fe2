// The trade wire model, keys and client moved to TickwireTradeClient (so that `tickwire trade` does not link the
// daemon); the daemon's API speaks in those types (TradeServiceConfig's checks take a `TradeRequest`), so a user
// of the daemon sees them without a second import.
@_exported import TickwireTradeClient
