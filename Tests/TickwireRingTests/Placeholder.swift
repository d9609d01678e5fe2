import Testing

// Filled by its issue.
