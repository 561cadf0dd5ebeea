import { VoiceApp } from "@/components/voice-app";

export default function TalkPage() {
  return <VoiceApp />;
}
