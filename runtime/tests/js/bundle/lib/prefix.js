export const prefix = "hello ";
