// Placeholder: the browser helper is being written (issue 6).
export {};
