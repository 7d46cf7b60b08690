/** Error text for people: a file's full path is already on screen, so messages say "This file" instead. */
export function aboutFile(message: string, filePath: string): string {
  if (!filePath || !message.includes(filePath)) return message;
  const text = message.startsWith(filePath)
    ? 'This file' + message.slice(filePath.length)
    : message.replaceAll(filePath, 'this file');
  return text;
}
